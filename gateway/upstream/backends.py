"""The pool of vLLM replicas: health checks, a circuit breaker each, and least-outstanding-requests choice.

A replica that refuses a connection is marked down at once, not only at the next health check, so a
dead backend costs at most one failed connect before traffic moves elsewhere.

A replica that hangs (accepts, then never answers) passes health checks: vLLM's HTTP server can answer
``/health`` while its engine is stuck. Its circuit breaker catches that: after ``breaker.failures``
consecutive connect failures or timeouts it opens and the replica gets no traffic for ``cooldown_s``;
then it is half-open and the next request is the probe (one at a time): an answer closes the breaker, a
failure opens it again. A breaker opened on connect failures (or dropped connections) also closes when the
health check passes again, since reaching the server was the problem; one opened on timeouts waits for
a real answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import aiohttp

from gateway.config import BreakerConfig, HealthCheck, ModelRoute
from monitor import metrics

log = logging.getLogger(__name__)


class Breaker:
    """One backend's circuit breaker: closed, open (no traffic) for a cooldown, then half-open (one probe)."""

    __slots__ = ("url", "config", "failures", "opened_at", "cause", "probing", "models", "_clock")

    def __init__(self, url: str, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
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


class Backend:
    """One vLLM OpenAI server, shared by every model route that lists its URL."""

    __slots__ = ("url", "outstanding", "healthy", "breaker", "_up_gauge", "_outstanding_gauge")

    def __init__(self, url: str, breaker: BreakerConfig | None = None) -> None:
        self.url = url.rstrip("/")
        self.outstanding = 0
        self.healthy = True
        self.breaker = Breaker(self.url, breaker or BreakerConfig())
        self._up_gauge = metrics.BACKEND_UP.labels(self.url)
        self._up_gauge.set(1)
        self._outstanding_gauge = metrics.BACKEND_OUTSTANDING.labels(self.url)

    def __repr__(self) -> str:
        state = "up" if self.healthy else "down"
        return f"Backend({self.url!r}, {state}, circuit {self.breaker.state}, outstanding={self.outstanding})"

    @contextmanager
    def lease(self) -> Iterator[Backend]:
        """Count a request as outstanding on this backend for as long as it is open."""
        self.outstanding += 1
        self._outstanding_gauge.inc()
        try:
            yield self
        finally:
            self.outstanding -= 1
            self._outstanding_gauge.dec()

    def mark_down(self, reason: str) -> None:
        if self.healthy:
            log.warning("backend %s marked down: %s", self.url, reason)
        self.healthy = False
        self._up_gauge.set(0)

    def mark_up(self) -> None:
        if not self.healthy:
            log.info("backend %s is healthy again", self.url)
        self.healthy = True
        self._up_gauge.set(1)


class BackendPool:
    """Model routes and the backends behind them."""

    def __init__(self, routes: list[ModelRoute], breaker: BreakerConfig | None = None) -> None:
        self._routes = {route.name: route for route in routes}
        self._backends: dict[str, Backend] = {}
        self._by_model: dict[str, list[Backend]] = {}
        for route in routes:
            replicas = []
            for url in route.backends:
                backend = self._backends.get(url.rstrip("/"))
                if backend is None:
                    backend = self._backends[url.rstrip("/")] = Backend(url, breaker)
                backend.breaker.models.append(route.name)
                metrics.BACKEND_CIRCUIT_OPEN.labels(route.name, backend.url).set(0)
                replicas.append(backend)
            self._by_model[route.name] = replicas

    @property
    def routes(self) -> list[ModelRoute]:
        return list(self._routes.values())

    @property
    def backends(self) -> list[Backend]:
        return list(self._backends.values())

    def route(self, model: str) -> ModelRoute | None:
        return self._routes.get(model)

    def candidates(self, model: str) -> list[Backend]:
        """Healthy replicas for ``model`` whose breaker admits a request, fewest outstanding requests first.

        A half-open replica comes first: its probe is how it gets back into rotation.
        """
        healthy = [b for b in self._by_model.get(model, ()) if b.healthy and b.breaker.admits()]
        healthy.sort(key=lambda backend: (backend.breaker.opened_at is None, backend.outstanding))
        return healthy

    def retry_after_s(self, model: str) -> float | None:
        """Seconds until the first open breaker of ``model``'s replicas half-opens; None when none is open."""
        waits = [b.breaker.retry_after_s() for b in self._by_model.get(model, ()) if b.breaker.opened_at is not None]
        return min(waits) if waits else None

    def unready_models(self) -> list[str]:
        """Models that have no healthy replica right now."""
        return [name for name in self._routes if not self.candidates(name)]

    async def check_all(self, session: aiohttp.ClientSession, config: HealthCheck) -> None:
        await asyncio.gather(*(self._check(session, backend, config) for backend in self._backends.values()))

    async def run_health_checks(self, session: aiohttp.ClientSession, config: HealthCheck) -> None:
        """Poll every backend's ``/health`` until cancelled."""
        while True:
            await asyncio.sleep(config.interval_s)
            await self.check_all(session, config)

    @staticmethod
    async def _check(session: aiohttp.ClientSession, backend: Backend, config: HealthCheck) -> None:
        timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        try:
            async with session.get(f"{backend.url}/health", timeout=timeout) as response:
                if response.status == 200:
                    backend.mark_up()
                    backend.breaker.health_passed()
                else:
                    backend.mark_down(f"/health answered {response.status}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            backend.mark_down(f"/health failed: {exc!r}")
