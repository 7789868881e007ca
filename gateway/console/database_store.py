"""A Litestar store (:class:`litestar.stores.base.Store`) in the gateway's state database, SQLite or PostgreSQL,
so that every replica sharing that database shares what is stored: the console's sessions.

Written here rather than taken from advanced-alchemy, the Litestar project's SQLAlchemy library, whose
``SQLAlchemyStore`` (1.12) was tried first: its ``set`` without an expiry fails on its own ``NOT NULL
expires_at``, it never deletes expired rows (it only skips them), and it needs its plugin config, an ORM model
keyed by UUID and alembic, adding about a second to each worker's start. This store is one Core table in the
state database's versioned schema (:func:`monitor.database.ensure_schema`), like the keys and the audit trail.

Expiry times are Unix seconds by the writing replica's clock. An expired entry is deleted when it is read, and
every expired entry now and then (on a write, at most once per ``purge_every_s`` in each process).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import sqlalchemy as sa
from litestar.stores.base import NamespacedStore

from monitor.database import ensure_schema, upsert_replacing

log = logging.getLogger(__name__)

SCHEMA_COMPONENT = "litestar_store"
SCHEMA_VERSION = 1
# Between a namespace and a child's (``console_sessions/child``): delete_all reaches the children too.
SEPARATOR = "/"

metadata = sa.MetaData()
store_entries = sa.Table(
    "litestar_store",
    metadata,
    sa.Column("namespace", sa.String(255), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("expires_at", sa.Double),  # NULL: never
    sa.Index("ix_litestar_store_expires_at", "expires_at"),
)


def _seconds(span: int | timedelta) -> float:
    return span.total_seconds() if isinstance(span, timedelta) else float(span)


class DatabaseStore(NamespacedStore):
    """Entries of one namespace in ``litestar_store``; each call runs its SQL in a thread, off the event loop."""

    __slots__ = ("_purged_at", "engine", "purge_every_s")

    def __init__(self, engine: sa.Engine, namespace: str, purge_every_s: float = 600.0) -> None:
        if not namespace or SEPARATOR in namespace:
            raise ValueError(f"a store namespace is a non-empty name without {SEPARATOR!r}")
        self.engine = engine
        self.namespace = namespace
        self.purge_every_s = purge_every_s
        self._purged_at = 0.0

    @classmethod
    def open(cls, engine: sa.Engine, namespace: str, purge_every_s: float = 600.0) -> DatabaseStore:
        """The store, its table made first if the database has none (safe for replicas starting together)."""
        ensure_schema(engine, SCHEMA_COMPONENT, SCHEMA_VERSION, [store_entries])
        return cls(engine, namespace, purge_every_s)

    def with_namespace(self, namespace: str) -> DatabaseStore:
        child = type(self)(self.engine, namespace, self.purge_every_s)
        child.namespace = f"{self.namespace}{SEPARATOR}{namespace}"
        return child

    def _entry(self, key: str) -> sa.ColumnElement[bool]:
        return sa.and_(store_entries.c.namespace == self.namespace, store_entries.c.key == key)

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        await asyncio.to_thread(self._set, key, value.encode() if isinstance(value, str) else value, expires_in)

    def _set(self, key: str, value: bytes, expires_in: int | timedelta | None) -> None:
        now = time.time()
        # As Litestar's own stores: an expiry of 0 means none.
        expires_at = now + _seconds(expires_in) if expires_in else None
        row = {"namespace": self.namespace, "key": key, "value": value, "expires_at": expires_at}
        with self.engine.begin() as conn:
            conn.execute(upsert_replacing(self.engine, store_entries, ["namespace", "key"], row))
        if now - self._purged_at >= self.purge_every_s:
            self._purged_at = now
            try:
                self.purge_expired()
            except sa.exc.SQLAlchemyError as exc:  # housekeeping: the value is stored, the next purge retries
                log.warning("cannot purge expired store entries: %s", exc)

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        return await asyncio.to_thread(self._get, key, renew_for)

    def _get(self, key: str, renew_for: int | timedelta | None) -> bytes | None:
        now = time.time()
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(store_entries.c.value, store_entries.c.expires_at).where(self._entry(key))
            ).first()
            if row is None:
                return None
            if row.expires_at is not None and row.expires_at <= now:
                # Only if still expired: another replica may have just written it again.
                conn.execute(sa.delete(store_entries).where(self._entry(key), store_entries.c.expires_at <= now))
                return None
            if renew_for and row.expires_at is not None:
                conn.execute(
                    sa.update(store_entries).where(self._entry(key)).values(expires_at=now + _seconds(renew_for))
                )
            return bytes(row.value)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._execute, sa.delete(store_entries).where(self._entry(key)))

    async def delete_all(self) -> None:
        """Every entry of this namespace and of its children."""
        column = store_entries.c.namespace
        mine = sa.or_(column == self.namespace, column.startswith(self.namespace + SEPARATOR, autoescape=True))
        await asyncio.to_thread(self._execute, sa.delete(store_entries).where(mine))

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._live_entry, key) is not None

    async def expires_in(self, key: str) -> int | None:
        """Whole seconds left; None if ``key`` is absent, expired or never expires."""
        entry = await asyncio.to_thread(self._live_entry, key)
        return None if entry is None or entry.expires_at is None else int(entry.expires_at - time.time())

    def _live_entry(self, key: str) -> sa.Row | None:
        now = time.time()
        live = sa.or_(store_entries.c.expires_at.is_(None), store_entries.c.expires_at > now)
        with self.engine.connect() as conn:
            return conn.execute(sa.select(store_entries.c.expires_at).where(self._entry(key), live)).first()

    def purge_expired(self) -> int:
        """Delete every expired entry, of any namespace; how many there were."""
        expired = sa.delete(store_entries).where(store_entries.c.expires_at <= time.time())
        return self._execute(expired)

    def _execute(self, statement: sa.Executable) -> int:
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount
