"""Per-alias drift detection: windows of production prompt embeddings against the alias's reference.

Flow for the gateway: ``observe_many()`` off the event loop for each batch of embedded prompts (it records
them on the drift board, :mod:`monitor.drift_board`, and returns the windows this replica claimed); each
claimed ``Window`` is scored with ``await check(window)`` in a worker thread and its verdict folded into the
alias's state on the board. Windows also close by age (``close_stale()``) so low-traffic aliases still get
checked, but a window smaller than ``min_window_size`` gets no verdict: it keeps collecting, and the state
says so. The board is shared by every replica on one state database; without one (benchmarks, tests) it
lives in an in-memory SQLite database, through the same code.

Verdicts have hysteresis: drift is confirmed after ``confirm_windows`` consecutive windows scoring over
the threshold and cleared only after ``clear_windows`` consecutive windows under the lower clear
threshold, so a score wobbling around one line cannot make the alert flap.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence

import msgspec
import numpy as np
import sqlalchemy as sa

from monitor.drift_board import Claimed, DriftBoard, Entry
from monitor.drift_methods import drift_score, evidently_method, sample_rows
from monitor.drift_types import AliasState, DriftEvent, DriftSettings, Hysteresis, Status, Transition, WindowResult
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


class _Watched:
    """An alias's reference as this replica loaded it (every replica loads the same one)."""

    def __init__(self, reference: ReferenceSet, sample: np.ndarray) -> None:
        self.reference = reference
        self.sample = sample
        # Typical distance of a reference prompt to its nearest other reference prompt: prompts much
        # farther than this from every reference prompt are what the drifted-ids list is made of.
        self.novelty_floor = _novelty_floor(sample)

    @property
    def version(self) -> str:
        return self.reference.meta.version


def in_memory_engine() -> sa.Engine:
    """A private SQLite database for a board no other process shares (one connection, any thread)."""
    return sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool, connect_args={"check_same_thread": False})


class DriftMonitor:
    """References, scoring and the rules of confirmation, over the board's windows; synchronous methods
    touch the board (call them from a thread in the gateway)."""

    def __init__(
        self,
        settings: DriftSettings | None = None,
        clock: Callable[[], float] = time.time,
        engine: sa.Engine | None = None,
    ) -> None:
        self.settings = settings or DriftSettings()
        self._method = evidently_method(self.settings.method)
        self._thresholds = self.settings.method.thresholds
        self._watched: dict[str, _Watched] = {}
        # One board call at a time in this process (the in-memory board has one connection); replicas are
        # kept apart by the board's row locks.
        self._lock = threading.Lock()
        self._board = DriftBoard(engine or in_memory_engine(), self.settings, clock)

    def set_reference(self, alias: str, reference: ReferenceSet) -> None:
        """Judge ``alias`` against ``reference`` from now on (a new version starts from a clean state: the
        board keeps each version's windows apart). No I/O: call it anywhere."""
        sample = sample_rows(reference.embeddings, self.settings.reference_sample)
        with self._lock:
            self._watched[alias] = _Watched(reference, sample)

    def forget_other_versions(self, alias: str) -> None:
        """Delete the board's windows of ``alias``'s versions this replica no longer judges (all of them once
        it stopped watching the alias). Every replica does so as it follows a promotion, so prompts a lagging
        replica still wrote for the old version go too."""
        with self._lock:
            watched = self._watched.get(alias)
            self._board.forget(alias, keep_version=watched.version if watched is not None else "")

    def remove(self, alias: str) -> None:
        """Stop watching ``alias`` here (other replicas may go on)."""
        with self._lock:
            self._watched.pop(alias, None)

    def observe(self, alias: str, request_id: str, embedding: np.ndarray) -> Window | None:
        """Record one production prompt; return the last window it let this replica claim, if any."""
        windows = self.observe_many([(alias, request_id, embedding)])
        return windows[-1] if windows else None

    def observe_many(self, prompts: Sequence[tuple[str, str, np.ndarray]]) -> list[Window]:
        """Record (alias, request id, embedding) prompts of watched aliases; the windows they filled."""
        with self._lock:
            entries = [
                Entry(alias, watched.version, request_id, embedding)
                for alias, request_id, embedding in prompts
                if (watched := self._watched.get(alias)) is not None
            ]
            ready = self._board.append(entries)
            return [self._window(c) for alias, version in ready for c in self._board.claim(alias, version)]

    def close_stale(self) -> list[Window]:
        """Claim windows older than ``max_window_age_s`` that hold enough prompts for a verdict, and windows
        a replica claimed and never judged."""
        with self._lock:
            return [
                self._window(claimed)
                for alias, watched in self._watched.items()
                for claimed in self._board.claim(alias, watched.version, stale=True)
            ]

    def last_window(self, alias: str) -> tuple[Window, np.ndarray] | None:
        """The alias's last closed window and its whole reference: what a report for a person compares."""
        with self._lock:
            watched = self._watched.get(alias)
            claimed = self._board.last_window(alias, watched.version) if watched is not None else None
            if watched is None or claimed is None:
                return None
            return self._window(claimed), watched.reference.embeddings

    def _window(self, claimed: Claimed) -> Window:
        watched = self._watched[claimed.alias]
        return Window(**claimed._asdict(), reference=watched.sample, novelty_floor=watched.novelty_floor)

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
        """Record a window's verdict and fold it (after any earlier window still being scored) into the
        alias's state; the event, if this confirmed or cleared drift. None for a replaced reference's window."""
        with self._lock:
            watched = self._watched.get(result.alias)
            if watched is None or watched.version != result.version:
                return None  # the reference changed while this window was scored
            events = self._board.record(result, self.fold)
        return events[-1] if events else None

    async def check(self, window: Window) -> tuple[WindowResult, DriftEvent | None]:
        """``score`` then ``apply`` in a worker thread (the event loop never runs Evidently or the board): the
        verdict, and the event it caused."""

        def judge() -> tuple[WindowResult, DriftEvent | None]:
            result = self.score(window)
            return result, self.apply(result)

        return await asyncio.to_thread(judge)

    def fold(self, state: Hysteresis, result: WindowResult) -> tuple[Hysteresis, DriftEvent | None]:
        """One window's verdict folded into a state: the new state, and the event if it changed status."""
        state = msgspec.structs.replace(state, checked=state.checked + 1, last=result)
        settings = self.settings
        if not state.drifting:
            over = [*state.over, result] if result.over else []
            if len(over) < settings.confirm_windows:
                return msgspec.structs.replace(state, over=over), None
            event = self._event("fired", over, result)
            return msgspec.structs.replace(
                state, drifting=True, since=result.closed_at, under=0, over=over, event=event
            ), event
        under = state.under + 1 if result.score < self._thresholds.clear else 0
        if under < settings.clear_windows:
            return msgspec.structs.replace(state, under=under), None
        event = self._event("resolved", [result], result)
        return msgspec.structs.replace(state, drifting=False, since=None, over=[], under=under, event=event), event

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

    def events(self, limit: int = 100) -> list[DriftEvent]:
        """The fleet's newest confirmations and clearances of the watched versions, newest last."""
        with self._lock:
            watched = [(alias, w.version) for alias, w in self._watched.items()]
            return self._board.events(watched, limit)

    def state(self, alias: str) -> AliasState:
        with self._lock:
            watched = self._watched.get(alias)
            if watched is None:
                return AliasState(
                    alias=alias,
                    version=None,
                    status="no_reference",
                    pending=0,
                    min_window_size=self.settings.min_window_size,
                    window_size=self.settings.window_size,
                    note="no reference set: no drift verdict for this alias",
                )
            return self._describe(alias, watched)

    def states(self) -> list[AliasState]:
        with self._lock:
            return [self._describe(alias, watched) for alias, watched in sorted(self._watched.items())]

    def _describe(self, alias: str, watched: _Watched) -> AliasState:
        state, pending = self._board.summary(alias, watched.version)
        need = self.settings.min_window_size
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
            version=watched.version,
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
