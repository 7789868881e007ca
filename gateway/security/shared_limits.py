"""Per-key limits shared by every gateway worker through the state database (SQLite under <home>, or
PostgreSQL in cluster mode), so that a key's limits hold however many workers or pods serve it.

- Requests and tokens per minute: a counter per key, kind (``rpm``/``tpm``) and minute since the epoch,
  read as a sliding window the way most shared rate limiters do it (two buckets: this minute's count plus the
  previous minute's, weighted by how much of it is still inside the last 60 s). One statement checks and
  counts: ``INSERT ... SELECT ... WHERE fits ON CONFLICT DO UPDATE SET n = n + x WHERE fits RETURNING n``;
  no row back means refused, and nothing was counted. Both SQLite (≥ 3.35) and PostgreSQL run it
  atomically: SQLite takes its write lock when a write statement starts; PostgreSQL locks the conflicting
  row and evaluates the ``WHERE`` on its latest version.
- Concurrency: a lease row per request in flight, with an expiry the holding worker keeps pushing forward
  (:func:`maintain`); a crashed worker's leases lapse within ``limits.shared_lease_s``. Counting the live
  leases and adding one is serialised per key: by SQLite's write lock, by an advisory transaction lock on
  PostgreSQL.

Clocks are wall clocks (``time.time``): every worker and pod must agree on the minute (NTP suffices; a
skew of a second moves a second's worth of counts between buckets).

Every call here is synchronous and blocking: the limiter runs them off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable

import sqlalchemy as sa

from gateway.config import Settings
from monitor.database import create_engine, ensure_schema

SCHEMA_COMPONENT = "shared_limits"
SCHEMA_VERSION = 1
# First half of PostgreSQL's two-int advisory lock key: keeps these locks apart from ensure_schema's.
_LOCK_CLASS = 0x6C696D  # "lim"
_log = logging.getLogger(__name__)

metadata = sa.MetaData()
limit_counts = sa.Table(
    "limit_counts",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),  # rpm | tpm
    sa.Column("bucket", sa.BigInteger, primary_key=True),  # minutes since the epoch
    sa.Column("n", sa.BigInteger, nullable=False),
)
limit_leases = sa.Table(
    "limit_leases",
    metadata,
    sa.Column("lease_id", sa.String(32), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Index("limit_leases_key", "key_id", "expires_at"),
)

# Parameters are cast: PostgreSQL cannot otherwise tell their types in a SELECT list or beside a subquery.
_TAKE = sa.text(
    """
    INSERT INTO limit_counts (key_id, kind, bucket, n)
    SELECT CAST(:key_id AS VARCHAR), CAST(:kind AS VARCHAR), CAST(:bucket AS BIGINT), CAST(:amount AS BIGINT)
    WHERE CAST(:amount AS BIGINT) + CAST(:weight AS DOUBLE PRECISION) * COALESCE(
        (SELECT p.n FROM limit_counts p
         WHERE p.key_id = CAST(:key_id AS VARCHAR) AND p.kind = CAST(:kind AS VARCHAR)
           AND p.bucket = CAST(:previous AS BIGINT)), 0
    ) <= CAST(:limit AS BIGINT)
    ON CONFLICT (key_id, kind, bucket) DO UPDATE SET n = limit_counts.n + excluded.n
    WHERE limit_counts.n + excluded.n + CAST(:weight AS DOUBLE PRECISION) * COALESCE(
        (SELECT p.n FROM limit_counts p
         WHERE p.key_id = CAST(:key_id AS VARCHAR) AND p.kind = CAST(:kind AS VARCHAR)
           AND p.bucket = CAST(:previous AS BIGINT)), 0
    ) <= CAST(:limit AS BIGINT)
    RETURNING n
    """
)
_ACQUIRE = sa.text(
    """
    INSERT INTO limit_leases (lease_id, key_id, expires_at)
    SELECT CAST(:lease_id AS VARCHAR), CAST(:key_id AS VARCHAR), CAST(:expires_at AS DOUBLE PRECISION)
    WHERE (
        SELECT count(*) FROM limit_leases
        WHERE key_id = CAST(:key_id AS VARCHAR) AND expires_at > CAST(:now AS DOUBLE PRECISION)
    ) < CAST(:limit AS BIGINT)
    """
)


def shared_mode(settings: Settings) -> bool:
    """``limits.shared``: true/false, or auto = shared when several workers or a PostgreSQL state database."""
    choice = settings.limits.shared
    if choice != "auto":
        return bool(choice)
    if settings.workers > 1:
        return True
    url = settings.adapters.url if settings.adapters is not None else None
    return bool(url) and sa.make_url(url).get_backend_name() == "postgresql"


def retry_after(current: int, previous: int, elapsed_s: float, amount: int, limit: int) -> float:
    """Seconds until ``amount`` more fits: the previous minute fades out over this one, this one over the next."""
    if amount > limit:
        return 60.0
    room = limit - amount - current
    if room >= 0 and previous > 0:
        return max(1.0, 60 * (1 - room / previous) - elapsed_s)
    fade = 1 - (limit - amount) / current if current else 0.0
    return max(1.0, 60 - elapsed_s + 60 * fade)


class SharedCounters:
    """The shared counters and leases in one database; one per gateway worker."""

    def __init__(self, url: str, timeout_s: float = 1.0) -> None:
        timeout_ms = max(1, int(timeout_s * 1000))
        # No pre-ping: after a PostgreSQL restart one check fails (open, see RateLimiter) and the pool renews.
        self.engine = create_engine(url, sqlite_busy_timeout_ms=timeout_ms, pre_ping=False)
        # Single statements need no BEGIN/COMMIT round trips around them on PostgreSQL (SQLite has no round
        # trips, and switching its driver's mode per checkout costs more than it saves).
        self.postgres = self.engine.dialect.name == "postgresql"
        self._single = self.engine.execution_options(isolation_level="AUTOCOMMIT") if self.postgres else self.engine
        if self.postgres:

            @sa.event.listens_for(self.engine, "connect")
            def _session(dbapi_connection, _record) -> None:
                with dbapi_connection.cursor() as cursor:
                    # A stuck statement gives its pool thread back instead of holding it past the caller's wait.
                    cursor.execute(f"SET statement_timeout = {timeout_ms}")
                    # No WAL flush per commit: a server crash may forget the last moments' counts (never corrupt
                    # them), which a rate limit can afford; a flush per request it cannot.
                    cursor.execute("SET synchronous_commit = off")
                dbapi_connection.commit()

        ensure_schema(self.engine, SCHEMA_COMPONENT, SCHEMA_VERSION, [limit_counts, limit_leases])

    def close(self) -> None:
        self.engine.dispose()

    def admit(self, key_id: str, kind: str, amount: int, limit: int, now: float) -> float | None:
        """Count ``amount`` against the key's sliding minute if it fits. None: counted, in bucket
        ``int(now // 60)``; else the seconds until it would fit (nothing counted)."""
        bucket, elapsed = divmod(now, 60)
        bucket = int(bucket)
        params = {
            "key_id": key_id,
            "kind": kind,
            "bucket": bucket,
            "previous": bucket - 1,
            "amount": amount,
            "limit": limit,
            "weight": 1 - elapsed / 60,
        }
        with self._single.begin() as conn:
            if conn.execute(_TAKE, params).first() is not None:
                return None
            counts = dict(
                conn.execute(
                    sa.select(limit_counts.c.bucket, limit_counts.c.n).where(
                        limit_counts.c.key_id == key_id,
                        limit_counts.c.kind == kind,
                        limit_counts.c.bucket.in_((bucket, bucket - 1)),
                    )
                ).all()
            )
        return retry_after(counts.get(bucket, 0), counts.get(bucket - 1, 0), elapsed, amount, limit)

    def adjust(self, key_id: str, kind: str, bucket: int, delta: int) -> None:
        """Correct a count already made (tokens: actual usage replacing the estimate)."""
        if delta == 0:
            return
        with self._single.begin() as conn:
            conn.execute(
                sa.update(limit_counts)
                .where(limit_counts.c.key_id == key_id, limit_counts.c.kind == kind, limit_counts.c.bucket == bucket)
                .values(n=sa.case((limit_counts.c.n + delta < 0, 0), else_=limit_counts.c.n + delta))
            )

    def acquire(self, key_id: str, lease_id: str, limit: int, now: float, lease_s: float) -> bool:
        """One more request of the key in flight, unless ``limit`` live leases are already out."""
        with self.engine.begin() as conn:
            if self.postgres:
                lock = zlib.crc32(key_id.encode()) - 2**31
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_CLASS, lock)))
            done = conn.execute(
                _ACQUIRE,
                {"lease_id": lease_id, "key_id": key_id, "expires_at": now + lease_s, "now": now, "limit": limit},
            )
        return done.rowcount == 1

    def release(self, lease_ids: list[str]) -> None:
        with self._single.begin() as conn:
            conn.execute(sa.delete(limit_leases).where(limit_leases.c.lease_id.in_(lease_ids)))

    def in_flight(self, key_id: str, now: float) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.count())
                .select_from(limit_leases)
                .where(limit_leases.c.key_id == key_id, limit_leases.c.expires_at > now)
            ).scalar_one()

    def renew(self, lease_ids: list[str], now: float, lease_s: float) -> None:
        """Push the expiry of leases still held (long streams) forward."""
        with self._single.begin() as conn:
            conn.execute(
                sa.update(limit_leases).where(limit_leases.c.lease_id.in_(lease_ids)).values(expires_at=now + lease_s)
            )

    def purge(self, now: float) -> None:
        """Drop lapsed leases and buckets no window reads any more."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(limit_leases).where(limit_leases.c.expires_at <= now))
            conn.execute(sa.delete(limit_counts).where(limit_counts.c.bucket < int(now // 60) - 1))


async def maintain(
    counters: SharedCounters, held: Callable[[], list[str]], lease_s: float, clock: Callable[[], float] = time.time
) -> None:
    """Renew this worker's leases every third of their lifetime; purge stale rows about once a minute."""
    every = lease_s / 3
    since_purge = 0.0
    while True:
        await asyncio.sleep(every)
        try:
            leases = held()
            if leases:
                await asyncio.to_thread(counters.renew, leases, clock(), lease_s)
            since_purge += every
            if since_purge >= 60:
                since_purge = 0.0
                await asyncio.to_thread(counters.purge, clock())
        except sa.exc.SQLAlchemyError as exc:
            _log.warning("shared limits: cannot renew leases or purge: %s", exc)
