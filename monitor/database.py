"""What every driftgate table set needs from its database: an engine with the right settings, and a schema
created idempotently and versioned per component, on SQLite (embedded) or PostgreSQL (cluster).

Schemas are versioned by a row per component in ``driftgate_schema`` rather than by Alembic: each component
(request log, adapter registry, keys, audit) is a table or two created with ``IF NOT EXISTS``, so every
gateway process can open its stores at startup without a separate upgrade step. A store refuses a database
whose schema is newer than it knows, so an old gateway never writes rows a new one misreads; the first real
migration is the moment to bring Alembic in.
"""

from __future__ import annotations

import sqlite3
import time
import zlib
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

schema_metadata = sa.MetaData()

schema_versions = sa.Table(
    "driftgate_schema",
    schema_metadata,
    sa.Column("component", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)


class SchemaError(RuntimeError):
    """The database holds a schema this code does not know."""


def _use_wal(cursor: sqlite3.Cursor, within_s: float) -> None:
    """Switch the file to WAL (it stays so): only when it is not yet, and retried, because SQLite answers a
    switch racing another connection's (gateway workers opening a new file together) with "database is
    locked" at once, without waiting on the busy timeout."""
    deadline = time.monotonic() + within_s
    if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        return
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")  # an in-memory database answers "memory": fine too
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def create_engine(url: str, sqlite_busy_timeout_ms: int = 5_000, pre_ping: bool = True) -> sa.Engine:
    """``hide_parameters``: a failed statement's error message would otherwise quote prompts into the logs.

    ``pre_ping=False`` saves a round trip per statement where one failed statement after a server restart is
    acceptable (the failure invalidates the whole pool, so it happens once)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, hide_parameters=True)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            # WAL: readers never block the writer. NORMAL: a commit survives a process crash (not a power
            # cut) without an fsync per transaction. The busy timeout comes first so the rest wait for a lock.
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout={int(sqlite_busy_timeout_ms)}")
            _use_wal(cursor, sqlite_busy_timeout_ms / 1000)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": 5}
    # pre_ping: after a server restart, pooled connections are dead; find out before the statement, not during it.
    return sa.create_engine(parsed, hide_parameters=True, pool_pre_ping=pre_ping, connect_args=connect_args)


def _dialect_insert(engine: sa.Engine, table: sa.Table):
    return (sqlite_insert if engine.dialect.name == "sqlite" else pg_insert)(table)


def upsert_ignoring(engine: sa.Engine, table: sa.Table, key: str | list[str]) -> sa.Insert:
    """``INSERT ... ON CONFLICT (key) DO NOTHING`` in the engine's dialect: writes that are safe to retry."""
    return _dialect_insert(engine, table).on_conflict_do_nothing(index_elements=[key] if isinstance(key, str) else key)


def upsert_replacing(engine: sa.Engine, table: sa.Table, keys: list[str], values: dict[str, object]) -> sa.Insert:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE``: the row ``values`` describes, whether or not one was there."""
    insert = _dialect_insert(engine, table).values(**values)
    replaced = {name: insert.excluded[name] for name in values if name not in keys}
    return insert.on_conflict_do_update(index_elements=keys, set_=replaced)


def ensure_schema(engine: sa.Engine, component: str, version: int, tables: list[sa.Table]) -> None:
    """Create ``tables`` (and their indexes) if missing and check the component's recorded schema version."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # CREATE ... IF NOT EXISTS still races on PostgreSQL's catalogs when replicas start together.
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(zlib.crc32(component.encode()))))
        for table in (schema_versions, *tables):
            conn.execute(sa.schema.CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
        conn.execute(upsert_ignoring(engine, schema_versions, "component").values(component=component, version=version))
        found = conn.execute(
            sa.select(schema_versions.c.version).where(schema_versions.c.component == component)
        ).scalar_one()
    if found != version:
        raise SchemaError(f"{component} schema is version {found}, this driftgate knows {version}: upgrade driftgate")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same statement later may succeed: locked, disk full, server down or restarting.

    Anything else (a value the column cannot hold, a missing table) fails the same way every time.
    """
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError)
