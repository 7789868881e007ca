"""Keeps the request log off the request path: a bounded queue drained in batches by one background task.

``submit`` only appends to a deque, so a slow, locked or dead store never slows a request; when the
queue is full the record is dropped and counted instead. The drain task writes batches in one dedicated
thread (the DB drivers are synchronous): one thread means one writer per process, so SQLite never sees
this process contend with itself, and retention runs in the same thread between batches for the same
reason. A batch the store refuses for a transient reason is retried with backoff, for as long as it
takes; a batch refused for its content is split so that only the bad records are rejected.

Acknowledged means committed: a record is acknowledged when the transaction holding its batch has
committed and the store returned. ``written`` counts acknowledged records, ``on_commit`` receives their
ids, and ``await flush()`` returns once every record accepted before the call is acknowledged or counted
as rejected. Accepted records that are not acknowledged yet are lost only if the process dies; a
graceful ``close`` writes them, or counts as ``dropped`` those it could not write within its timeout.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from monitor.request_log import RequestLogSettings, RequestRecord
from monitor.request_log_store import RequestLogStore, is_transient

log = logging.getLogger(__name__)

T = TypeVar("T")


class RequestLogWriter:
    """Accepts records without blocking and writes them to a :class:`RequestLogStore` in the background.

    Counters (monotonic, for Prometheus): ``accepted`` by ``submit``; ``dropped``: refused because the
    queue was full or the writer closed, or accepted but still unwritten when ``close`` gave up;
    ``written``: acknowledged; ``rejected``: refused by the store for their content (never retried);
    ``failed_batches``: write attempts that failed; ``expired``: deleted by retention.
    Call ``submit``, ``flush`` and ``close`` from the event loop the writer was started on.
    """

    def __init__(
        self,
        store: RequestLogStore,
        config: RequestLogSettings,
        *,
        on_commit: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.on_commit = on_commit
        self.accepted = 0
        self.dropped = 0
        self.written = 0
        self.rejected = 0
        self.failed_batches = 0
        self.expired = 0
        self._settled = 0  # accepted records now written, rejected or given up: the queue is FIFO
        self._flush_target = 0
        self._queue: deque[RequestRecord] = deque()
        self._arrived = asyncio.Event()
        self._filled = asyncio.Event()
        self._progress = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="request-log")

    @property
    def queued(self) -> int:
        """Records accepted and not yet taken into a batch."""
        return len(self._queue)

    def start(self) -> None:
        """Start the drain task on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="request-log-writer")

    def submit(self, record: RequestRecord) -> bool:
        """Queue ``record`` for writing; False (and ``dropped`` + 1) if the queue is full or the writer closed."""
        if self._closing or len(self._queue) >= self.config.queue_size:
            self.dropped += 1
            return False
        self._queue.append(record)
        self.accepted += 1
        if len(self._queue) == 1:
            self._arrived.set()
        if len(self._queue) >= self.config.batch_size:
            self._filled.set()
        return True

    async def flush(self) -> None:
        """Return once every record accepted before this call is acknowledged (or rejected).

        While the store is down this waits for it to come back: bound it with ``asyncio.timeout`` if needed.
        """
        target = self.accepted
        self._flush_target = max(self._flush_target, target)
        self._filled.set()  # a partial batch waiting out max_delay goes now
        while self._settled < target:
            if self._task is None or self._task.done():
                raise RuntimeError("request-log writer is not running")
            await self._progress.wait()

    async def close(self, timeout_s: float | None = None) -> None:
        """Stop accepting, write everything accepted, and count as dropped what is still unwritten at the timeout.

        A batch whose commit was in flight when the timeout struck may still land: then it is both stored
        and counted dropped, never silently missing.
        """
        self._closing = True
        self._arrived.set()
        self._filled.set()
        timeout = self.config.close_timeout_s if timeout_s is None else timeout_s
        if self._task is not None:
            _, pending = await asyncio.wait({self._task}, timeout=timeout)
            if pending:
                self._task.cancel()
                await asyncio.wait({self._task})
        unwritten = self.accepted - self._settled
        if unwritten:
            log.error("request log closed with %d accepted records unwritten; counted as dropped", unwritten)
            self.dropped += unwritten
            self._queue.clear()
            self._settle(unwritten)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        retention = self.config.max_age_days is not None or self.config.max_rows is not None
        next_retention = loop.time() if retention else math.inf
        try:
            while self._queue or not self._closing:
                if loop.time() >= next_retention and not self._closing:
                    await self._retain()
                    next_retention = loop.time() + self.config.retention_interval_s
                if not self._queue:
                    self._arrived.clear()
                    await _wait(self._arrived, next_retention - loop.time())
                    continue
                if len(self._queue) < self.config.batch_size and not self._urgent():
                    self._filled.clear()
                    await _wait(self._filled, self.config.max_delay_s)
                count = min(self.config.batch_size, len(self._queue))
                await self._write([self._queue.popleft() for _ in range(count)])
        finally:
            self._progress.set()  # a flush waiting on a task that died must see it

    def _urgent(self) -> bool:
        return self._closing or self._flush_target > self._settled

    async def _write(self, batch: list[RequestRecord]) -> None:
        """Write ``batch`` until it commits; if its content is refused, write its records one by one."""
        delay = self.config.retry_initial_s
        while True:
            try:
                await self._in_thread(self.store.insert, batch)
            except Exception as exc:
                self.failed_batches += 1
                if not is_transient(exc):
                    await self._write_each(batch, exc)
                    return
                log.warning("request log write of %d records failed, retrying in %.2fs: %s", len(batch), delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.retry_max_s)
                continue
            self.written += len(batch)
            self._settle(len(batch))
            self._notify([record.id for record in batch])
            return

    async def _write_each(self, batch: list[RequestRecord], exc: Exception) -> None:
        if len(batch) == 1:
            log.error("request log rejected record %s: %s", batch[0].id, exc)
            self.rejected += 1
            self._settle(1)
            return
        for record in batch:
            await self._write([record])

    async def _retain(self) -> None:
        max_age_days = self.config.max_age_days
        try:
            self.expired += await self._in_thread(
                partial(
                    self.store.enforce_retention,
                    max_age_s=None if max_age_days is None else max_age_days * 86_400,
                    max_rows=self.config.max_rows,
                )
            )
        except Exception as exc:
            log.warning("request log retention failed, next try in %.0fs: %s", self.config.retention_interval_s, exc)

    async def _in_thread(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _settle(self, count: int) -> None:
        self._settled += count
        self._progress.set()
        self._progress = asyncio.Event()

    def _notify(self, ids: list[str]) -> None:
        if self.on_commit is None:
            return
        try:
            self.on_commit(ids)
        except Exception:
            log.exception("request log on_commit callback failed")


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    """Wait for ``event`` at most ``timeout_s`` seconds (forever if infinite)."""
    if math.isinf(timeout_s):
        await event.wait()
        return
    try:
        async with asyncio.timeout(max(timeout_s, 0.0)):
            await event.wait()
    except TimeoutError:
        pass
