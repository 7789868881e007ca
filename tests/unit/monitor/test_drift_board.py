"""Replicas sharing one drift board (SQLite file, then real PostgreSQL): windows fill from every replica's
prompts, each window is judged once, every replica reports the same state and events, and a window a dead
replica claimed is judged by another."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest
import sqlalchemy as sa

from monitor.drift import DriftMonitor, DriftSettings, Window
from monitor.drift_methods import MethodSettings
from tests.unit.monitor.test_drift_state import CLEAR, FIRE, Clock, reference, result

SIZE = 10


@pytest.fixture
def engine(db_url: str):
    engine = sa.create_engine(db_url)
    yield engine
    engine.dispose()


def replicas(engine: sa.Engine, clock: Clock, count: int = 2) -> list[DriftMonitor]:
    method = MethodSettings(threshold=FIRE, clear_threshold=CLEAR)
    settings = DriftSettings(method=method, window_size=SIZE, min_window_size=5, confirm_windows=2)
    fleet = [DriftMonitor(settings, clock=clock, engine=engine) for _ in range(count)]
    for monitor in fleet:
        monitor.set_reference("a", reference())
    return fleet


def send(fleet: list[DriftMonitor], first: int, count: int) -> list[Window]:
    """Prompts ``first .. first+count-1``, dealt to the replicas in turn (as a load balancer would)."""
    rows = reference().embeddings
    windows: list[Window] = []
    for n in range(first, first + count):
        windows += fleet[n % len(fleet)].observe_many([("a", f"r{n}", rows[n % len(rows)])])
    return windows


def test_windows_fill_from_every_replica_and_each_is_judged_once(engine: sa.Engine) -> None:
    fleet = replicas(engine, Clock())
    windows = send(fleet, 0, 3 * SIZE)
    # Alone, each replica would have seen 15 prompts: one window. Together they close three.
    assert [w.sequence for w in windows] == [0, 1, 2]
    assert all(len(w.request_ids) == SIZE for w in windows)
    assert len({i for w in windows for i in w.request_ids}) == 3 * SIZE  # every prompt in exactly one window
    # Each window's verdict is folded by whichever replica scored it; both over: drift is confirmed.
    first, second = (fleet[1].apply(result(windows[0], 0.02)), fleet[0].apply(result(windows[1], 0.02)))
    assert first is None and second is not None and second.transition == "fired"
    for monitor in fleet:
        state = monitor.state("a")
        assert (state.status, state.windows_checked, state.pending) == ("drifting", 2, 0)
        assert [e.transition for e in monitor.events()] == ["fired"]


def test_a_verdict_waits_for_the_window_before_it(engine: sa.Engine) -> None:
    fleet = replicas(engine, Clock())
    first, second = send(fleet, 0, 2 * SIZE)
    # The second window's replica finishes first: nothing is folded until the first window's verdict lands.
    assert fleet[1].apply(result(second, 0.02)) is None
    assert fleet[0].state("a").windows_checked == 0
    event = fleet[0].apply(result(first, 0.02))
    assert event is not None and event.transition == "fired"
    assert fleet[1].state("a").windows_checked == 2


def test_a_window_claimed_by_a_dead_replica_is_judged_by_another(engine: sa.Engine) -> None:
    clock = Clock()
    fleet = replicas(engine, clock)
    (orphan,) = send(fleet, 0, SIZE)  # claimed, then its replica dies before scoring it
    assert fleet[0].close_stale() == [] and fleet[1].close_stale() == []  # not yet: it may still be scoring
    clock.now += 61
    (taken,) = fleet[1].close_stale()
    assert (taken.sequence, taken.request_ids) == (orphan.sequence, orphan.request_ids)
    fleet[1].apply(result(taken, 0.001))
    assert fleet[0].state("a").windows_checked == 1


def test_replicas_writing_at_once_lose_and_repeat_no_prompt(engine: sa.Engine) -> None:
    fleet = replicas(engine, Clock(), count=4)
    rows = reference().embeddings
    closed: list[Window] = []
    lock = threading.Lock()

    def replica(k: int) -> None:
        monitor = fleet[k]
        for n in range(k, 200, len(fleet)):
            windows = monitor.observe_many([("a", f"r{n}", rows[n % len(rows)])])
            with lock:
                closed.extend(windows)

    threads = [threading.Thread(target=replica, args=(k,)) for k in range(len(fleet))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(w.sequence for w in closed) == list(range(200 // SIZE))
    seen = Counter(i for w in closed for i in w.request_ids)
    assert set(seen) == {f"r{n}" for n in range(200)} and set(seen.values()) == {1}
    assert np.allclose(closed[0].embeddings[0], rows[int(closed[0].request_ids[0][1:]) % len(rows)])


def test_a_new_version_starts_clean_and_the_old_ones_windows_go(engine: sa.Engine) -> None:
    fleet = replicas(engine, Clock())
    windows = send(fleet, 0, SIZE + 3)
    fleet[0].apply(result(windows[0], 0.02))
    for monitor in fleet:
        monitor.set_reference("a", reference(version="2"))
    fleet[0].forget_other_versions("a")
    for monitor in fleet:
        state = monitor.state("a")
        assert (state.version, state.windows_checked, state.pending) == ("2", 0, 0)
    with engine.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM drift_prompts WHERE version = '1'")).scalar()
    assert left == 0
