"""Windows, minimum size and hysteresis of the drift monitor, on scores chosen by the test (its board in a
private in-memory database; tests/unit/monitor/test_drift_board.py shares one between replicas)."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.drift import DriftMonitor, DriftSettings, Window, WindowResult
from monitor.drift_methods import MethodSettings
from monitor.reference import ReferenceMeta, ReferenceSet

FIRE, CLEAR = 0.01, 0.005


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reference(version: str = "1") -> ReferenceSet:
    rows = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    meta = ReferenceMeta(alias="a", version=version, embedder="t", count=50, source="t", created_at=0)
    return ReferenceSet(meta=meta, embeddings=rows)


def make(clock: Clock | None = None, **settings) -> DriftMonitor:
    method = MethodSettings(threshold=FIRE, clear_threshold=CLEAR)
    options = {"window_size": 10, "min_window_size": 5, "confirm_windows": 2, "clear_windows": 2, **settings}
    monitor = DriftMonitor(DriftSettings(method=method, **options), clock=clock or Clock())
    monitor.set_reference("a", reference())
    return monitor


def full_window(monitor: DriftMonitor) -> Window:
    """One window's worth of prompts (window_size 10), and the window they close."""
    rows = reference().embeddings
    start = sum(s.pending for s in monitor.states()) + 10 * sum(s.windows_checked for s in monitor.states())
    windows = monitor.observe_many([("a", f"r{start + i}", rows[i]) for i in range(10)])
    assert len(windows) == 1
    return windows[0]


def result(window: Window, score: float) -> WindowResult:
    """The window's verdict with the score the test chooses; its first three prompts are the novel ones."""
    return WindowResult(
        alias="a", version=window.version, sequence=window.sequence, size=10, method="mmd", score=score,
        threshold=FIRE, clear_threshold=CLEAR, over=score > FIRE, opened_at=0, closed_at=1,
        novel_request_ids=window.request_ids[:3],
    )  # fmt: skip


def transitions(monitor: DriftMonitor, scores: list[float]) -> list[str | None]:
    return [getattr(monitor.apply(result(full_window(monitor), score)), "transition", None) for score in scores]


def test_drift_is_confirmed_only_after_consecutive_windows_over_the_threshold() -> None:
    monitor = make()
    assert transitions(monitor, [0.02, 0.001, 0.02, 0.001, 0.02]) == [None] * 5
    assert transitions(monitor, [0.02]) == ["fired"]
    assert monitor.state("a").status == "drifting"


def test_hysteresis_needs_consecutive_windows_under_the_lower_threshold_to_clear() -> None:
    monitor = make()
    transitions(monitor, [0.02, 0.02])
    # Under the fire threshold but over the clear one: still drifting, and no re-fire either.
    assert transitions(monitor, [0.008, 0.009, 0.004, 0.008, 0.004]) == [None] * 5
    assert monitor.state("a").status == "drifting"
    assert transitions(monitor, [0.004]) == ["resolved"]
    state = monitor.state("a")
    assert state.status == "ok" and state.last_event is not None and state.last_event.transition == "resolved"


def test_the_fired_event_carries_the_ids_of_the_drifted_windows() -> None:
    monitor = make()
    monitor.apply(result(full_window(monitor), 0.02))
    event = monitor.apply(result(full_window(monitor), 0.03))
    assert event is not None and event.request_ids == ["r0", "r1", "r2", "r10", "r11", "r12"]
    assert len(event.windows) == 2 and event.score == 0.03 and event.threshold == FIRE
    assert monitor.events() == [event]


def test_no_verdict_below_the_minimum_window_size() -> None:
    clock = Clock()
    monitor = make(clock, max_window_age_s=60)
    for i in range(4):
        assert monitor.observe("a", f"r{i}", reference().embeddings[i]) is None
    clock.now += 3600
    assert monitor.close_stale() == []  # 4 < 5 prompts: keeps collecting
    state = monitor.state("a")
    assert state.status == "collecting" and state.pending == 4 and "4 of the 5 prompts" in state.note
    monitor.observe("a", "r4", reference().embeddings[4])
    (window,) = monitor.close_stale()
    assert len(window.request_ids) == 5 and monitor.state("a").pending == 0


def test_a_full_window_closes_on_count_and_overlapping_windows_keep_their_tail() -> None:
    monitor = make(step=4)
    rows = reference().embeddings
    closed = [w for i in range(18) if (w := monitor.observe("a", f"r{i}", rows[i])) is not None]
    assert [w.request_ids[0] for w in closed] == ["r0", "r4", "r8"]
    assert all(len(w.request_ids) == 10 for w in closed)


async def test_check_scores_off_the_loop_and_ignores_a_replaced_reference() -> None:
    monitor = make()
    rows = reference().embeddings
    window: Window | None = None
    for i in range(10):
        window = monitor.observe("a", f"r{i}", rows[i])
    assert window is not None
    verdict, event = await monitor.check(window)
    assert verdict.sequence == window.sequence and event is None
    assert monitor.state("a").windows_checked == 1
    replaced = full_window(monitor)
    monitor.set_reference("a", reference(version="2"))
    assert monitor.apply(result(replaced, 1.0)) is None
    assert monitor.state("a").windows_checked == 0 and monitor.state("a").version == "2"


def test_unknown_aliases_are_ignored_and_reported() -> None:
    monitor = make()
    assert monitor.observe("nope", "r", np.zeros(8, dtype=np.float32)) is None
    assert monitor.state("nope").status == "no_reference"
    assert [s.alias for s in monitor.states()] == ["a"]


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="clear_threshold"):
        DriftSettings(method=MethodSettings(threshold=0.1, clear_threshold=0.2))
    with pytest.raises(ValueError, match="min_window_size"):
        DriftSettings(window_size=10, min_window_size=20)
    assert MethodSettings(name="distance").thresholds.fire == 0.10


def test_the_last_closed_window_is_kept_with_the_whole_reference_for_a_report() -> None:
    monitor = make()
    assert monitor.last_window("a") is None and monitor.last_window("unknown") is None
    rows = np.eye(8, dtype=np.float32)
    closed = [monitor.observe("a", f"r{i}", rows[i % 8]) for i in range(10)]
    assert closed[-1] is not None and closed[:-1] == [None] * 9
    window, whole = monitor.last_window("a")
    assert window.request_ids == [f"r{i}" for i in range(10)] and window.embeddings.shape == (10, 8)
    assert whole.shape == (50, 8)  # the full reference, not the scoring sample
    monitor.observe("a", "r10", rows[0])  # a new window opening leaves the closed one in place
    assert monitor.last_window("a")[0].request_ids[-1] == "r9"
