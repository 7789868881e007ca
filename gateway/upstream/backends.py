"""The pool of vLLM replicas: health checks, a circuit breaker each (``breaker.py``), and
least-outstanding-requests choice.

A replica that refuses a connection is marked down at once, not only at the next health check, so a
dead backend costs at most one failed connect before traffic moves elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp

from gateway.config import BreakerSettings, HealthCheckSettings, ModelRoute
from gateway.upstream.breaker import Breaker
from monitor import metrics

log = logging.getLogger(__name__)


class Backend:
    """One vLLM OpenAI server, shared by every model route that lists its URL."""

    __slots__ = ("url", "outstanding", "healthy", "slow_checks", "breaker", "_up_gauge", "_outstanding_gauge")

    def __init__(self, url: str, breaker: BreakerSettings | None = None) -> None:
        self.url = url.rstrip("/")
        self.outstanding = 0
        self.healthy = True
        self.slow_checks = 0  # health checks in a row that timed out
        self.breaker = Breaker(self.url, breaker or BreakerSettings())
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
        self.slow_checks = 0
        if not self.healthy:
            log.info("backend %s is healthy again", self.url)
        self.healthy = True
        self._up_gauge.set(1)


class BackendPool:
    """Model routes and the backends behind them."""

    def __init__(self, routes: list[ModelRoute], breaker: BreakerSettings | None = None) -> None:
        self._routes = {route.name: route for route in routes}
        self._backends: dict[str, Backend] = {}
        self._by_model: dict[str, list[Backend]] = {}
        for route in routes:
            replicas = []
            for url in route.backends:
                backend = self._backends.get(url.rstrip("/"))
                if backend is None:
                    backend = Backend(url, breaker)
                    self._backends[backend.url] = backend
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

    def routes_on(self, backend: Backend) -> list[ModelRoute]:
        """The model routes ``backend`` serves (one vLLM replica may serve several)."""
        return [route for route in self._routes.values() if backend in self._by_model[route.name]]

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

    async def check_all(self, session: aiohttp.ClientSession, config: HealthCheckSettings) -> None:
        await asyncio.gather(*(self._check(session, backend, config) for backend in self._backends.values()))

    async def run_health_checks(self, session: aiohttp.ClientSession, config: HealthCheckSettings) -> None:
        """Poll every backend's ``/health`` until cancelled."""
        while True:
            await asyncio.sleep(config.interval_s)
            await self.check_all(session, config)

    @staticmethod
    async def _check(session: aiohttp.ClientSession, backend: Backend, config: HealthCheckSettings) -> None:
        timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        try:
            async with session.get(f"{backend.url}/health", timeout=timeout) as response:
                if response.status == 200:
                    backend.mark_up()
                    backend.breaker.health_passed()
                else:
                    backend.mark_down(f"/health answered {response.status}")
        except TimeoutError:
            # A slow answer is not a dead server (a busy CPU vLLM, or this worker's own loop held up): only
            # several in a row take the backend out; a hung engine meanwhile is the breaker's job.
            backend.slow_checks += 1
            if backend.slow_checks >= config.timeouts_before_down:
                backend.mark_down(f"/health timed out {backend.slow_checks} times in a row ({config.timeout_s} s each)")
        except aiohttp.ClientError as exc:
            backend.mark_down(f"/health failed: {exc!r}")
