"""Guard work off the event loop: a bounded thread pool and a per-request budget.

The guards are CPU-bound (regexes, phone matching, onnxruntime). Run on the event loop, one request with a
large prompt froze its worker for everyone: health checks, other clients, the backend checker. Here the
work runs on a few threads of its own (onnxruntime and the tokenizers release the GIL; Python code gives it
up at the switch interval, ``guard_work.gil_switch_interval_s``, so the loop keeps answering), and a request
whose guards are not done within its alias's ``guards.budget_s`` gets the alias's ``guards.on_timeout`` policy: a 503
``guard_timeout`` (refuse), or its text passed unguarded (pass). The work itself checks the same deadline
between texts, so a thread never goes on long after its request gave up on it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from gateway.config import GuardWorkSettings
from gateway.errors import GuardTimeout
from monitor import metrics

T = TypeVar("T")
# Measured (docs/guards.md): text of digit groups costs the guards about 20x what prose costs per character,
# since libphonenumber parses every run of digits as a candidate number.
DIGIT_COST = 20


def guard_cost(chars: int, raw: bytes) -> int:
    """An estimate of the guards' work on a text, in characters of prose: ``chars`` plus each digit of
    ``raw`` (the body, or the text encoded) ``DIGIT_COST`` times over. Cheap: two passes in C over the bytes."""
    return chars + DIGIT_COST * (len(raw) - len(raw.translate(None, b"0123456789")))


class Deadline:
    """When one request's guard work must be done (monotonic seconds), and when its thread took it up."""

    __slots__ = ("at", "budget_s", "created", "started")

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.created = time.monotonic()
        self.at = self.created + budget_s
        self.started: float | None = None

    def left_s(self) -> float:
        return self.at - time.monotonic()

    def check(self) -> None:
        """Called by the work between texts: raise :class:`GuardTimeout` once the budget is spent, else offer
        the GIL (``sleep(0)``), so the event loop and lighter requests' guards get a turn between a heavy
        request's texts instead of waiting out Python's 5 ms switch interval."""
        if time.monotonic() > self.at:
            raise self.timeout()
        time.sleep(0)

    def timed(self, work: Callable[[Deadline], T]) -> T:
        """``work(self)``, noting when a thread took it up (the timeout then says where the time went)."""
        self.started = time.monotonic()
        return work(self)

    def timeout(self) -> GuardTimeout:
        """The 503 for this budget, saying whether the time went waiting for a guard thread or checking."""
        waited_until = self.started if self.started is not None else time.monotonic()
        return GuardTimeout.of(self.budget_s, waited_until - self.created)


class GuardWork:
    """This worker's guard threads, in two lanes: work estimated (:func:`guard_cost`) at up to ``heavy_chars``
    on the common threads, heavier work on a lane of its own, so requests at the caps queue behind each other
    (and run out of budget) instead of taking every thread from ordinary traffic."""

    def __init__(self, common: ThreadPoolExecutor, heavy: ThreadPoolExecutor, heavy_chars: int) -> None:
        self._common = common
        self._heavy = heavy
        self._heavy_chars = heavy_chars

    async def run(self, work: Callable[[Deadline], T], budget_s: float, stage: str, cost: int = 0) -> T:
        """``work(deadline)`` on a guard thread of the lane its ``cost`` (:func:`guard_cost`) falls in;
        :class:`GuardTimeout` when it is not done within ``budget_s`` (waiting for a free thread counts: a
        queue of heavy requests cannot stretch anyone's budget).

        Work that finished is used even when this coroutine resumes after the budget (a loop held up by
        something else must not turn a checked prompt into a 503); only work still queued or running at the
        deadline is given up on, and its 503 says how much of the budget went waiting for a thread."""
        deadline = Deadline(budget_s)
        executor = self._heavy if cost > self._heavy_chars else self._common
        future = asyncio.get_running_loop().run_in_executor(executor, deadline.timed, work)
        await asyncio.wait({future}, timeout=max(deadline.left_s(), 0.0))
        if not future.done():
            future.cancel()  # a queued job never starts; a running one stops at its next deadline check
            metrics.GUARD_TIMEOUTS.labels(stage).inc()
            raise deadline.timeout()
        try:
            return future.result()
        except GuardTimeout:
            metrics.GUARD_TIMEOUTS.labels(stage).inc()
            raise deadline.timeout() from None


@asynccontextmanager
async def running_guard_work(settings: GuardWorkSettings) -> AsyncIterator[GuardWork]:
    previous_interval = sys.getswitchinterval()
    sys.setswitchinterval(settings.gil_switch_interval_s)
    common = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="driftgate-guards")
    heavy = ThreadPoolExecutor(max_workers=settings.heavy_threads, thread_name_prefix="driftgate-guards-heavy")
    try:
        yield GuardWork(common, heavy, settings.heavy_chars)
    finally:
        # Queued work is dropped; a text being checked finishes on its own (each is bounded by the caps).
        common.shutdown(wait=False, cancel_futures=True)
        heavy.shutdown(wait=False, cancel_futures=True)
        sys.setswitchinterval(previous_interval)
