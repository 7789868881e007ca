"""A circuit breaker per backend replica.

A replica that hangs (accepts, then never answers) passes health checks: vLLM's HTTP server can answer
``/health`` while its engine is stuck. Its circuit breaker catches that: after ``breaker.failures``
consecutive connect failures or timeouts it opens and the replica gets no traffic for ``cooldown_s``;
then it is half-open and the next request is the probe (one at a time): an answer closes the breaker, a
failure opens it again. A breaker opened on connect failures (or dropped connections) also closes when the
health check passes again, since reaching the server was the problem; one opened on timeouts waits for
a real answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gateway.config import BreakerSettings
from monitor import metrics

log = logging.getLogger(__name__)


class Breaker:
    """One backend's circuit breaker: closed, open (no traffic) for a cooldown, then half-open (one probe)."""

    __slots__ = ("url", "config", "failures", "opened_at", "cause", "probing", "models", "_clock")

    def __init__(self, url: str, config: BreakerSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.config = config
        self.failures = 0  # consecutive
        self.opened_at: float | None = None
        self.cause = ""  # what opened it: connect, disconnect or timeout
        self.probing = False
        self.models: list[str] = []  # for the gauge's labels
        self._clock = clock

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if self._clock() - self.opened_at < self.config.cooldown_s else "half_open"

    def admits(self) -> bool:
        """Whether a request may be sent now (a half-open breaker admits only its one probe)."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self.probing)

    def acquire(self) -> bool | None:
        """Claim a send: False when refused, True when this request is the half-open probe, else None."""
        state = self.state
        if state == "closed":
            return None
        if state == "half_open" and not self.probing:
            self.probing = True
            return True
        return False

    def end_probe(self) -> None:
        """The probe ended without a verdict (its client left): the next request probes instead."""
        self.probing = False

    def retry_after_s(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.config.cooldown_s - (self._clock() - self.opened_at))

    def succeeded(self) -> None:
        self.failures = 0
        self.probing = False
        if self.opened_at is not None:
            log.info("backend %s answered again: circuit closed", self.url)
            self._close()

    def failed(self, cause: str) -> None:
        self.failures += 1
        probe_failed = self.probing or self.state == "half_open"
        self.probing = False
        if probe_failed or (self.opened_at is None and self.failures >= self.config.failures):
            log.warning(
                "backend %s: circuit open for %.0f s after %d consecutive failures (last: %s)",
                self.url, self.config.cooldown_s, self.failures, cause,
            )  # fmt: skip
            self.opened_at = self._clock()
            self.cause = cause
            self._set_gauge(1)

    def health_passed(self) -> None:
        """A passing health check proves the server is reachable again: enough when reaching it was the problem."""
        if self.opened_at is not None and self.cause != "timeout":
            log.info("backend %s passes its health check again: circuit closed", self.url)
            self.failures = 0
            self._close()

    def _close(self) -> None:
        self.opened_at = None
        self.cause = ""
        self._set_gauge(0)

    def _set_gauge(self, value: int) -> None:
        for model in self.models:
            metrics.BACKEND_CIRCUIT_OPEN.labels(model, self.url).set(value)
