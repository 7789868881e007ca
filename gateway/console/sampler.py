"""The console's time series: a task that reads the gateway's own Prometheus metrics every few seconds and keeps
an hour of points in memory, plus each watched alias's drift window scores.

Reading the metrics registry costs the sampler, never a request: the request path only increments the
counters it already increments. With several server workers (prometheus-client's multiprocess mode) every
worker's files are merged, so each worker's console shows the whole gateway.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterable

import msgspec
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.metrics_core import Metric

from monitor.drift_types import AliasState

_log = logging.getLogger(__name__)
HOUR_S = 3600.0


class Reading(msgspec.Struct):
    """Cumulative values of the metrics the console plots, as read at one moment."""

    at: float
    requests: float = 0.0
    errors: float = 0.0  # answered 5xx
    refused: float = 0.0  # answered 4xx (bad input, keys, limits, guard blocks)
    duration: dict[float, float] = msgspec.field(default_factory=dict)  # upper bound -> cumulative count
    ttft: dict[float, float] = msgspec.field(default_factory=dict)
    blocks: dict[str, float] = msgspec.field(default_factory=dict)  # by guard


class Point(msgspec.Struct):
    """One interval between two readings, as rates and quantiles (None: no request in the interval)."""

    at: float
    requests_per_s: float
    errors_per_s: float
    refused_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    ttft_p50_ms: float | None
    blocks: dict[str, float]  # by guard, in the interval


class DriftPoint(msgspec.Struct):
    at: float  # when the window closed
    score: float
    threshold: float
    clear_threshold: float
    over: bool


def _families() -> Iterable[Metric]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry.collect()
    return REGISTRY.collect()


def read_metrics(now: float | None = None) -> Reading:
    """The plotted metrics, summed over their labels."""
    reading = Reading(time.time() if now is None else now)
    for family in _families():
        if family.name == "driftgate_requests":
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                reading.requests += sample.value
                status = sample.labels.get("status", "")
                if status.startswith("5"):
                    reading.errors += sample.value
                elif status.startswith("4"):
                    reading.refused += sample.value
        elif family.name in ("driftgate_request_duration_seconds", "driftgate_time_to_first_token_seconds"):
            target = reading.duration if family.name == "driftgate_request_duration_seconds" else reading.ttft
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    target[bound] = target.get(bound, 0.0) + sample.value
        elif family.name == "driftgate_guard_decisions":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("action") == "block":
                    guard = sample.labels.get("guard", "")
                    reading.blocks[guard] = reading.blocks.get(guard, 0.0) + sample.value
    return reading


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    """The ``q`` quantile of the observations between two cumulative bucket readings, interpolated linearly in
    its bucket as PromQL's ``histogram_quantile`` does; None when nothing was observed."""
    bounds = sorted(after)
    counts = [after[bound] - before.get(bound, 0.0) for bound in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower  # past the last finite bucket: its bound is all that is known
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower


def point_between(before: Reading, after: Reading) -> Point:
    span = max(after.at - before.at, 1e-9)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 3)

    return Point(
        at=after.at,
        requests_per_s=(after.requests - before.requests) / span,
        errors_per_s=(after.errors - before.errors) / span,
        refused_per_s=(after.refused - before.refused) / span,
        p50_ms=ms(quantile(0.5, before.duration, after.duration)),
        p99_ms=ms(quantile(0.99, before.duration, after.duration)),
        ttft_p50_ms=ms(quantile(0.5, before.ttft, after.ttft)),
        blocks={guard: count - before.blocks.get(guard, 0.0) for guard, count in after.blocks.items()},
    )


class Sampler:
    """An hour of :class:`Point` and, per drift-watched alias, its recent window scores."""

    def __init__(
        self,
        every_s: float,
        drift_states: Callable[[], list[AliasState]] | None = None,
        read: Callable[[], Reading] = read_metrics,
    ) -> None:
        self.every_s = every_s
        self._read = read
        self._drift_states = drift_states
        self.points: deque[Point] = deque(maxlen=max(2, int(HOUR_S / every_s)))
        self.drift: dict[str, deque[DriftPoint]] = {}
        self.first: Reading | None = None
        self.last: Reading | None = None

    def sample(self) -> None:
        """Read the metrics and record them (tests call this directly)."""
        self.record(self._read())

    def record(self, reading: Reading) -> None:
        """Add the interval ending at ``reading`` and any new drift window. Runs on the event loop, where the
        pages read these deques and the drift watch keeps its state."""
        if self.last is not None:
            self.points.append(point_between(self.last, reading))
        else:
            self.first = reading
        self.last = reading
        for state in self._drift_states() if self._drift_states is not None else []:
            window = state.last
            series = self.drift.setdefault(state.alias, deque(maxlen=360))
            if window is None or (series and series[-1].at == window.closed_at):
                continue
            series.append(
                DriftPoint(window.closed_at, window.score, window.threshold, window.clear_threshold, window.over)
            )

    async def run(self) -> None:
        """Sample until cancelled: the metrics are read in a thread (with several workers that reads their
        files), then recorded here; a failed read is logged and the next one tried."""
        while True:
            try:
                self.record(await asyncio.to_thread(self._read))
            except Exception as exc:  # noqa: BLE001 - the console's plots must not stop the gateway
                _log.warning("console sampler: %r", exc)
            await asyncio.sleep(self.every_s)

    def totals(self) -> Point | None:
        """Since this worker started: the overall rates and quantiles (None before the second reading)."""
        if self.first is None or self.last is None or self.last is self.first:
            return None
        return point_between(self.first, self.last)
