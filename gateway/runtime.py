"""What the routes share inside one gateway worker: settings, the backend pool and the upstream client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import aiohttp

from gateway.adapters.service import Adapters, running_adapters
from gateway.backends import BackendPool
from gateway.config import Settings
from gateway.drift_watch import DriftWatch, running_drift_watch
from gateway.guarding import GuardSet
from gateway.proxy import Upstream
from gateway.request_log import running_request_log
from monitor.request_log_writer import RequestLogWriter
from monitor.tracing import Tracing


class Gateway:
    def __init__(self, settings: Settings, tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.tracing = tracing
        self.tracer = tracing.tracer if tracing is not None else None
        self.pool = BackendPool(settings.models)
        self.guards = GuardSet(settings)
        self.started_at = int(time.time())
        self._upstream: Upstream | None = None
        self.request_log: RequestLogWriter | None = None
        self.drift: DriftWatch | None = None
        self.adapters: Adapters | None = None

    @property
    def upstream(self) -> Upstream:
        if self._upstream is None:
            raise RuntimeError("the gateway is not running: use Gateway.running()")
        return self._upstream

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Gateway]:
        """Open the upstream connection pool, check every backend once, then keep checking."""
        # limit=0: the backends' own queues bound concurrency; a client-side cap only adds latency.
        connector = aiohttp.TCPConnector(limit=0)
        async with (
            aiohttp.ClientSession(connector=connector, auto_decompress=False) as session,
            running_request_log(self.settings) as self.request_log,
            running_drift_watch(self.settings.drift, Path(self.settings.home)) as self.drift,
        ):
            self._upstream = Upstream(self.pool, session, self.settings.timeouts)
            await self.pool.check_all(session, self.settings.health)
            checks = asyncio.create_task(self.pool.run_health_checks(session, self.settings.health))
            try:
                async with running_adapters(self.settings, self.pool, session) as self.adapters:
                    yield self
            finally:
                checks.cancel()
                with suppress(asyncio.CancelledError):
                    await checks
                self._upstream = None
                if self.tracing is not None:
                    self.tracing.shutdown()
