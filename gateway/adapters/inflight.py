"""Requests in flight per adapter version, shared by every gateway worker and pod through the state database.

A backend may drop a version only when no worker has a request running on it, but each worker counts only
its own requests (in memory: the request path never touches the database). So each worker publishes its
counts here every reconcile interval and reads everyone else's in the same transaction. Rows carry the time
they were written: a worker that died stops counting once its rows are ``stale_s`` old.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

import sqlalchemy as sa

from monitor.database import ensure_schema

SCHEMA_COMPONENT = "adapter_inflight"
SCHEMA_VERSION = 1

metadata = sa.MetaData()

adapter_inflight = sa.Table(
    "adapter_inflight",
    metadata,
    sa.Column("holder", sa.String(64), primary_key=True),  # one gateway worker
    sa.Column("version", sa.String(256), primary_key=True),  # an adapter version's name, e.g. "support@3"
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("seen", sa.Double, nullable=False),  # unix seconds of the worker's last publication
)


class InflightBoard:
    """This worker's row set on the shared board; synchronous (call it from a thread)."""

    def __init__(self, engine: sa.Engine, *, stale_s: float) -> None:
        self.engine = engine
        self.stale_s = stale_s
        self.holder = uuid.uuid4().hex
        ensure_schema(engine, SCHEMA_COMPONENT, SCHEMA_VERSION, [adapter_inflight])

    def exchange(self, counts: Mapping[str, int], now: float | None = None) -> set[str]:
        """Publish this worker's counts; return the versions other live workers have requests running on."""
        now = time.time() if now is None else now
        table = adapter_inflight
        rows = [
            {"holder": self.holder, "version": name, "count": count, "seen": now}
            for name, count in counts.items()
            if count > 0
        ]
        with self.engine.begin() as conn:
            # Rows too old to count are nobody's any more (this worker's own are rewritten below).
            conn.execute(
                sa.delete(table).where(sa.or_(table.c.holder == self.holder, table.c.seen < now - self.stale_s))
            )
            if rows:
                conn.execute(sa.insert(table), rows)
            busy = conn.execute(sa.select(table.c.version).distinct().where(table.c.holder != self.holder))
            return set(busy.scalars())

    def withdraw(self) -> None:
        """Remove this worker's rows (on a clean shutdown), so nothing waits ``stale_s`` for them."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(adapter_inflight).where(adapter_inflight.c.holder == self.holder))
