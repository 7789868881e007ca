"""Per-alias drift detection: windows of production prompt embeddings against the alias's reference.

Flow for the gateway: ``observe()`` on the event loop for each embedded prompt (cheap, no scoring);
when it returns a closed ``Window``, ``await check(window)`` scores it in a worker thread and updates the
alias's state. Windows also close by age (``close_stale()``) so low-traffic aliases still get checked,
but a window smaller than ``min_window_size`` gets no verdict: it keeps collecting, and the state says so.

Verdicts have hysteresis: drift is confirmed after ``confirm_windows`` consecutive windows scoring over
the threshold and cleared only after ``clear_windows`` consecutive windows under the lower clear
threshold, so a score wobbling around one line cannot make the alert flap.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import msgspec
import numpy as np

from monitor.drift_methods import drift_score, evidently_method, sample_rows
from monitor.drift_types import AliasState, DriftEvent, DriftSettings, Status, Transition, WindowResult
from monitor.reference import ReferenceSet


class Window(msgspec.Struct, frozen=True):
    """A closed window, ready to score: immutable, so it can cross to a worker thread."""

    alias: str
    version: str
    sequence: int
    request_ids: list[str]
    embeddings: np.ndarray
    opened_at: float
    closed_at: float
    # The alias's reference sample and novelty floor at closing time.
    reference: np.ndarray
    novelty_floor: float


class _Alias:
    """Mutable per-alias bookkeeping; only touched under the monitor's lock."""

    def __init__(self, reference: ReferenceSet, reference_sample: np.ndarray, now: float) -> None:
        self.reference = reference
        self.sample = reference_sample
        # Typical distance of a reference prompt to its nearest other reference prompt: prompts much
        # farther than this from every reference prompt are what the drifted-ids list is made of.
        self.novelty_floor = _novelty_floor(reference_sample)
        self.ids: list[str] = []
        self.rows: list[np.ndarray] = []
        self.opened_at = now
        self.sequence = 0
        self.drifting = False
        self.over: list[WindowResult] = []
        self.under = 0
        self.checked = 0
        self.last: WindowResult | None = None
        self.since: float | None = None
        self.event: DriftEvent | None = None
        self.last_window: Window | None = None  # kept for a person's report (a few hundred KB at most)


class DriftMonitor:
    """Sliding windows, scores and confirmed-drift state for every alias that has a reference."""

    def __init__(self, settings: DriftSettings | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings or DriftSettings()
        self._clock = clock
        self._method = evidently_method(self.settings.method)
        self._thresholds = self.settings.method.thresholds
        self._aliases: dict[str, _Alias] = {}
        self._lock = threading.Lock()

    def set_reference(self, alias: str, reference: ReferenceSet) -> None:
        """Judge ``alias`` against ``reference`` from now on (a new version starts from a clean state)."""
        sample = sample_rows(reference.embeddings, self.settings.reference_sample)
        with self._lock:
            self._aliases[alias] = _Alias(reference, sample, self._clock())

    def remove(self, alias: str) -> None:
        with self._lock:
            self._aliases.pop(alias, None)

    def observe(self, alias: str, request_id: str, embedding: np.ndarray) -> Window | None:
        """Add one production prompt; return the window it closes, if any. Cheap: no scoring here."""
        with self._lock:
            state = self._aliases.get(alias)
            if state is None:
                return None
            state.ids.append(request_id)
            state.rows.append(embedding)
            if len(state.ids) >= self.settings.window_size:
                return self._close(alias, state)
            return None

    def last_window(self, alias: str) -> tuple[Window, np.ndarray] | None:
        """The alias's last closed window and its whole reference: what a report for a person compares."""
        with self._lock:
            state = self._aliases.get(alias)
            if state is None or state.last_window is None:
                return None
            return state.last_window, state.reference.embeddings

    def close_stale(self) -> list[Window]:
        """Close windows older than ``max_window_age_s`` that hold enough prompts for a verdict."""
        now = self._clock()
        closed = []
        with self._lock:
            for alias, state in self._aliases.items():
                old = now - state.opened_at >= self.settings.max_window_age_s
                if old and len(state.ids) >= self.settings.min_window_size:
                    closed.append(self._close(alias, state))
        return closed

    def _close(self, alias: str, state: _Alias) -> Window:
        now = self._clock()
        window = Window(
            alias=alias,
            version=state.reference.meta.version,
            sequence=state.sequence,
            request_ids=list(state.ids),
            embeddings=np.stack(state.rows),
            opened_at=state.opened_at,
            closed_at=now,
            reference=state.sample,
            novelty_floor=state.novelty_floor,
        )
        state.last_window = window
        keep = self.settings.window_size - (self.settings.step or self.settings.window_size)
        state.ids, state.rows = (state.ids[-keep:], state.rows[-keep:]) if keep else ([], [])
        state.opened_at = now
        state.sequence += 1
        return window

    def score(self, window: Window) -> WindowResult:
        """Score a closed window against its alias's reference. CPU-bound: call it off the event loop."""
        score = drift_score(window.embeddings, window.reference, self._method)
        novelty = 1.0 - (window.embeddings @ window.reference.T).max(axis=1)
        novel = [i for i in np.argsort(-novelty) if novelty[i] > window.novelty_floor]
        novel = novel[: self.settings.max_drifted_ids]
        return WindowResult(
            alias=window.alias,
            version=window.version,
            sequence=window.sequence,
            size=len(window.request_ids),
            method=self.settings.method.name,
            score=score,
            threshold=self._thresholds.fire,
            clear_threshold=self._thresholds.clear,
            over=score > self._thresholds.fire,
            opened_at=window.opened_at,
            closed_at=window.closed_at,
            novel_request_ids=[window.request_ids[i] for i in novel],
        )

    def apply(self, result: WindowResult) -> DriftEvent | None:
        """Fold a window's score into the alias's state; return the event if drift was confirmed or cleared."""
        with self._lock:
            state = self._aliases.get(result.alias)
            if state is None or state.reference.meta.version != result.version:
                return None  # the reference changed while this window was scored
            state.checked += 1
            state.last = result
            if not state.drifting:
                state.over = [*state.over, result] if result.over else []
                if len(state.over) >= self.settings.confirm_windows:
                    state.drifting, state.since, state.under = True, result.closed_at, 0
                    state.event = self._event("fired", state.over, result)
                    return state.event
                return None
            state.under = state.under + 1 if result.score < self._thresholds.clear else 0
            if state.under >= self.settings.clear_windows:
                state.drifting, state.since, state.over = False, None, []
                state.event = self._event("resolved", [result], result)
                return state.event
            return None

    async def check(self, window: Window) -> DriftEvent | None:
        """``score`` in a worker thread, then ``apply``: the event loop never runs Evidently."""
        return self.apply(await asyncio.to_thread(self.score, window))

    def _event(self, transition: Transition, windows: list[WindowResult], last: WindowResult) -> DriftEvent:
        ids = list(dict.fromkeys(i for window in windows for i in window.novel_request_ids))
        return DriftEvent(
            transition=transition,
            alias=last.alias,
            version=last.version,
            method=last.method,
            score=last.score,
            threshold=last.threshold,
            windows=windows,
            request_ids=ids[: self.settings.max_drifted_ids],
            at=last.closed_at,
        )

    def state(self, alias: str) -> AliasState:
        with self._lock:
            state = self._aliases.get(alias)
            if state is None:
                return AliasState(
                    alias=alias,
                    version=None,
                    status="no_reference",
                    pending=0,
                    min_window_size=self.settings.min_window_size,
                    window_size=self.settings.window_size,
                    note="no reference set: no drift verdict for this alias",
                )
            return self._describe(alias, state)

    def states(self) -> list[AliasState]:
        with self._lock:
            return [self._describe(alias, state) for alias, state in sorted(self._aliases.items())]

    def _describe(self, alias: str, state: _Alias) -> AliasState:
        pending, need = len(state.ids), self.settings.min_window_size
        if state.drifting:
            status: Status = "drifting"
        elif state.checked == 0:
            status = "collecting"
        else:
            status = "ok"
        note = ""
        if state.checked == 0:
            note = f"no verdict yet: {pending} of the {need} prompts a window needs before it is judged"
        return AliasState(
            alias=alias,
            version=state.reference.meta.version,
            status=status,
            pending=pending,
            min_window_size=need,
            window_size=self.settings.window_size,
            consecutive_over=len(state.over),
            consecutive_under=state.under,
            windows_checked=state.checked,
            last=state.last,
            drifting_since=state.since,
            last_event=state.event,
            note=note,
        )


def _novelty_floor(sample: np.ndarray, quantile: float = 0.95) -> float:
    """The ``quantile`` of 1 - cosine between each reference row and its nearest other reference row."""
    if len(sample) < 2:
        return 0.0
    similarity = sample @ sample.T
    np.fill_diagonal(similarity, -np.inf)
    return float(np.quantile(1.0 - similarity.max(axis=1), quantile))
