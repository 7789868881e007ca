"""The gateway's side of the request log: open the store, run the writer, mirror its counters to Prometheus."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from gateway.config import Settings
from monitor import metrics
from monitor.request_log_store import RequestLogStore
from monitor.request_log_writer import RequestLogWriter

log = logging.getLogger(__name__)


def store_url(settings: Settings) -> str:
    config = settings.request_log
    assert config is not None
    if config.url:
        return config.url
    home = Path(settings.home)
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'driftgate.db'}"


@asynccontextmanager
async def running_request_log(settings: Settings) -> AsyncIterator[RequestLogWriter | None]:
    """A started writer for the lifetime of a worker; on the way out, everything accepted is written."""
    config = settings.request_log
    if config is None:
        yield None
        return
    store = await asyncio.to_thread(
        RequestLogStore, store_url(settings), sqlite_busy_timeout_ms=config.sqlite_busy_timeout_ms
    )
    writer = RequestLogWriter(store, config)
    writer.start()
    mirror = asyncio.create_task(_mirror_counters(writer))
    try:
        yield writer
    finally:
        await writer.close(config.close_timeout_s)
        mirror.cancel()
        with suppress(asyncio.CancelledError):
            await mirror
        _publish(writer, _Seen())
        store.close()


class _Seen:
    __slots__ = ("written", "dropped", "failed_batches")

    def __init__(self) -> None:
        self.written = self.dropped = self.failed_batches = 0


async def _mirror_counters(writer: RequestLogWriter, every_s: float = 1.0) -> None:
    """Copy the writer's plain counters into Prometheus (works in multiprocess mode, unlike a collector)."""
    seen = _Seen()
    while True:
        await asyncio.sleep(every_s)
        _publish(writer, seen)


def _publish(writer: RequestLogWriter, seen: _Seen) -> None:
    for outcome, now in (("written", writer.written), ("dropped", writer.dropped)):
        if now > getattr(seen, outcome):
            metrics.LOG_RECORDS.labels(outcome).inc(now - getattr(seen, outcome))
            setattr(seen, outcome, now)
    if writer.failed_batches > seen.failed_batches:
        metrics.LOG_FAILED_BATCHES.inc(writer.failed_batches - seen.failed_batches)
        seen.failed_batches = writer.failed_batches
