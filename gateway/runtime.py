"""What one gateway worker builds and shares between its routes (:class:`Gateway`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import aiohttp

from gateway.adapters.content_routing import ContentRouter, fallback_reference
from gateway.adapters.service import Adapters, running_adapters
from gateway.config import Settings, state_url
from gateway.drift.watch import DriftWatch, running_drift_watch
from gateway.edge.guard_work import running_guard_work
from gateway.edge.guarding import GuardSet
from gateway.edge.request_log import running_request_log
from gateway.edge.request_path import RequestPath
from gateway.host.job_runners import job_runner
from gateway.loop.controller import LoopController
from gateway.loop.store import LoopStore
from gateway.security.audit import AuditLog
from gateway.security.auth import Authenticator, RateLimiter
from gateway.security.keys import KeyStore
from gateway.security.shared_limits import SharedCounters, maintain, shared_mode
from gateway.upstream.backends import BackendPool
from gateway.upstream.proxy import Upstream
from monitor import metrics
from monitor.request_log_writer import RequestLogWriter
from monitor.tracing import Tracing
from training.jobs import JobRunner


async def _publish_job_states(jobs: JobRunner, every_s: float = 5.0) -> None:
    """Training jobs by state, for the dashboards (reads each job's status file: cheap, and off the loop)."""
    while True:
        try:
            found = await asyncio.to_thread(jobs.list)
            for state in ("queued", "running", "succeeded", "failed", "cancelled"):
                metrics.TRAINING_JOBS.labels(state).set(sum(job.progress.state == state for job in found))
        except OSError as exc:
            logging.getLogger(__name__).warning("cannot read training jobs: %s", exc)
        await asyncio.sleep(every_s)


def _log_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logging.getLogger(__name__).error("audit append failed: %r", future.exception())


class Gateway:
    """Everything one gateway worker (one process) builds, and when each part exists.

    From construction (no I/O): ``settings``, ``tracing``/``tracer``, ``pool`` (the backends, not yet
    checked), ``guards`` (the guard pipelines per model), ``limiter`` (this worker's in-flight cap and per-key
    counters), ``jobs`` (the training job runner) and ``started_at``.

    Only inside :meth:`running` (the app's lifespan; None or refused outside it): ``upstream`` (the aiohttp
    pool to the backends), ``auth`` (the key store behind a cache), ``audit`` (the audit trail),
    ``request_log`` (its writer; None when ``request_log`` is off), ``drift`` (None when drift detection is
    off), ``adapters`` (None without ``adapters:``), ``loop_store`` (feedback and loop runs; None without the
    request log), ``loop`` (the loop controller; None without ``loop:`` and ``adapters:``), and
    ``request_path`` (the inference routes' steps, built last from the parts above).

    Handlers never read these from the app's state: :mod:`gateway.providers` hands each handler the parts it
    names, and refuses a part that is off (404 ``feature_not_configured``).
    """

    def __init__(self, settings: Settings, tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.tracing = tracing
        self.tracer = tracing.tracer if tracing is not None else None
        self.pool = BackendPool(settings.models, settings.breaker)
        self.guards = GuardSet(settings)
        self.started_at = int(time.time())
        self._upstream: Upstream | None = None
        self._request_path: RequestPath | None = None
        self.request_log: RequestLogWriter | None = None
        self.drift: DriftWatch | None = None
        self.adapters: Adapters | None = None
        self.auth: Authenticator | None = None
        self.audit: AuditLog | None = None
        self.limiter = RateLimiter()
        self.jobs = job_runner(settings)
        self.loop_store: LoopStore | None = None
        self.loop: LoopController | None = None

    def record(self, actor: str, action: str, subject: str, details: dict | None = None) -> None:
        """Append to the audit trail off the event loop; an audit failure is logged, never raised to the caller."""
        if self.audit is None:
            return
        task = asyncio.get_running_loop().run_in_executor(None, self.audit.append, actor, action, subject, details)
        task.add_done_callback(_log_failure)

    @asynccontextmanager
    async def _running_loop(self, url: str) -> AsyncIterator[None]:
        """Feedback storage (with the request log) and the loop controller (with adapters and a loop policy)."""
        if self.request_log is None:
            yield
            return
        self.loop_store = await asyncio.to_thread(LoopStore, url)
        if self.adapters is not None and self.drift is not None:
            self.adapters.listeners.append(self.drift.follow)
            self.adapters.reference_builder = self.drift.build_reference
            self.drift.follow(self.adapters.snapshot)
        tasks = [asyncio.create_task(_publish_job_states(self.jobs))]
        if self.settings.loop is not None and self.adapters is not None:
            self.loop = LoopController(
                self.settings,
                self.settings.loop,
                self.loop_store,
                self.adapters,
                self.jobs,
                self.request_log.store,
                embed=self.drift.embedder.embed if self.drift is not None else None,
                audit=lambda actor, action, subject, details: self.record(actor, action, subject, details),
            )
            if self.drift is not None:
                self.drift.receivers.append(self.loop.receive_payload)
            tasks.append(asyncio.create_task(self.loop.drive()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            self.loop_store.close()

    @property
    def upstream(self) -> Upstream:
        if self._upstream is None:
            raise RuntimeError("the gateway is not running: use Gateway.running()")
        return self._upstream

    @property
    def request_path(self) -> RequestPath:
        """The inference routes' machinery over this worker's parts (see :mod:`gateway.edge.request_path`)."""
        if self._request_path is None:
            raise RuntimeError("the gateway is not running: use Gateway.running()")
        return self._request_path

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Gateway]:
        """Open the upstream connection pool, check every backend once, then keep checking."""
        # limit=0: the backends' own queues bound concurrency; a client-side cap only adds latency.
        connector = aiohttp.TCPConnector(limit=0)
        async with (
            aiohttp.ClientSession(connector=connector, auto_decompress=False) as session,
            running_request_log(self.settings) as self.request_log,
            running_drift_watch(
                self.settings.drift,
                Path(self.settings.home),
                self.settings.adapters is not None,
                state_url(self.settings),
            ) as self.drift,
            running_guard_work(self.settings.guard_work) as guard_work,
        ):
            self._upstream = Upstream(self.pool, session, self.settings.timeouts)
            url = state_url(self.settings)
            keys = await asyncio.to_thread(KeyStore, url)
            self.auth = Authenticator(keys, self.settings.auth)
            self.audit = await asyncio.to_thread(AuditLog, url)
            limits = self.settings.limits
            shared: SharedCounters | None = None
            if shared_mode(self.settings):
                shared = await asyncio.to_thread(SharedCounters, url, limits.shared_timeout_s)
                self.limiter.share(shared, limits.shared_timeout_s, limits.shared_lease_s)
            await self.pool.check_all(session, self.settings.health)
            checks = asyncio.create_task(self.pool.run_health_checks(session, self.settings.health))
            if shared is not None:
                leases = asyncio.create_task(maintain(shared, self.limiter.held_leases, limits.shared_lease_s))
            try:
                async with (
                    running_adapters(self.settings, self.pool, session) as self.adapters,
                    self._running_loop(url),
                ):
                    content_router = await _content_router(self.settings, self.adapters, self.drift)
                    self._request_path = RequestPath(
                        limits=limits,
                        limiter=self.limiter,
                        auth=self.auth,
                        pool=self.pool,
                        adapters=self.adapters,
                        content_router=content_router,
                        guards=self.guards,
                        guard_work=guard_work,
                        drift=self.drift,
                        sink=self.request_log.submit if self.request_log is not None else None,
                        tracer=self.tracer,
                        upstream=self._upstream,
                        audit=self.record,
                        started_at=self.started_at,
                    )
                    yield self
            finally:
                checks.cancel()
                with suppress(asyncio.CancelledError):
                    await checks
                if shared is not None:
                    leases.cancel()
                    with suppress(asyncio.CancelledError):
                        await leases
                    shared.close()
                self._upstream = None
                self._request_path = None
                keys.close()
                self.audit.close()
                if self.tracing is not None:
                    self.tracing.shutdown()


async def _content_router(
    settings: Settings, adapters: Adapters | None, drift: DriftWatch | None
) -> ContentRouter | None:
    """``model: "auto"``'s router over the drift watch's embedder, following the registry (None when off)."""
    auto = settings.adapters.auto if settings.adapters is not None else None
    if auto is None or adapters is None or drift is None:
        return None
    fallback = await asyncio.to_thread(fallback_reference, auto, drift.embedder.embed)
    router = ContentRouter(auto, drift.embedder.embed, fallback)
    adapters.listeners.append(router.follow)
    router.follow(adapters.snapshot)
    return router
