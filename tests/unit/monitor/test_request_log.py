"""The request log on real SQLite and a real PostgreSQL server: the same tests on both dialects."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from monitor import request_log_store
from monitor.request_log import GuardDecision, RequestLogSettings, RequestRecord
from monitor.request_log_store import RequestLogStore, SchemaError, request_log, schema_versions
from monitor.request_log_writer import RequestLogWriter
from tests.pg import PgCluster

StartWriter = Callable[..., RequestLogWriter]


def record(n: int, *, alias: str = "support", at: float | None = None, **fields: object) -> RequestRecord:
    values = {"route": "/v1/chat/completions", "status": 200, "latency_ms": 12.5, **fields}
    return RequestRecord(id=f"req-{n:06d}", time=1_700_000_000.0 + n if at is None else at, alias=alias, **values)


def fast_config(**overrides: object) -> RequestLogSettings:
    """Short delays and no retention, so tests run in milliseconds and count only what they cause."""
    values = dict(max_delay_s=0.05, retry_initial_s=0.02, retry_max_s=0.2, max_age_days=None, max_rows=None)
    return RequestLogSettings(**{**values, **overrides})


def stored_ids(store: RequestLogStore) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(sa.select(request_log.c.id)).scalars())


@pytest.fixture
def store(db_url: str) -> Iterator[RequestLogStore]:
    opened = RequestLogStore(db_url, sqlite_busy_timeout_ms=100)
    yield opened
    opened.close()


@pytest.fixture
async def start_writer(store: RequestLogStore) -> AsyncIterator[StartWriter]:
    """Start writers on ``store``; each is closed at teardown even if the test failed half-way."""
    started: list[RequestLogWriter] = []

    def start(config: RequestLogSettings, **kwargs: object) -> RequestLogWriter:
        writer = RequestLogWriter(store, config, **kwargs)
        writer.start()
        started.append(writer)
        return writer

    yield start
    for writer in started:
        await writer.close(timeout_s=1)


# The store


def test_sqlite_runs_in_wal_mode_with_normal_sync_and_a_busy_timeout(tmp_path) -> None:
    store = RequestLogStore(f"sqlite:///{tmp_path}/nested/dir/driftgate.db", sqlite_busy_timeout_ms=1234)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    store.close()
    # WAL is a property of the file: any other process opening it reads in WAL mode too.
    with sqlite3.connect(tmp_path / "nested" / "dir" / "driftgate.db") as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_record_round_trips_with_every_field(store: RequestLogStore) -> None:
    full = RequestRecord(
        id="0b6f3c1e-full",
        time=1_712_345_678.123456,
        key_id="key_42",
        alias="support",
        version="support@3",
        backend="http://10.0.0.5:8000",
        route="/v1/chat/completions",
        status=200,
        latency_ms=845.25,
        ttft_ms=61.5,
        prompt_tokens=31,
        completion_tokens=117,
        guard_decisions=(
            GuardDecision(guard="pii", stage="input", entity="EMAIL_ADDRESS", action="redact", count=2),
            GuardDecision(guard="toxicity", stage="output", entity="insult", action="allow"),
        ),
        prompt="Mail me at <EMAIL_ADDRESS>, my order is 🍕 late",
        completion="Sorry to hear that.",
        embedding_ref="emb/support/2024-04-05/0b6f3c1e",
        stream=True,
    )
    minimal = record(1)
    store.insert([full, minimal])
    assert store.get(full.id) == full
    assert store.get(minimal.id) == minimal
    assert store.get("no-such-id") is None


def test_records_are_invisible_to_the_garbage_collector() -> None:
    """Queued records are not traversed by every collection while they wait (docs/benchmarks.md)."""
    decision = GuardDecision(guard="pii", stage="input", entity="EMAIL_ADDRESS", action="redact")
    logged = record(1, guard_decisions=(decision,), prompt="Mail me at <EMAIL_ADDRESS>")
    gc.collect()  # a tuple is untracked at the first collection that finds it holds nothing trackable
    assert not any(gc.is_tracked(part) for part in (logged, logged.guard_decisions, decision))


def test_nul_characters_are_stored_as_replacement_characters(store: RequestLogStore) -> None:
    store.insert([record(1, prompt="a\x00b")])
    assert store.get("req-000001").prompt == "a\ufffdb"


def test_a_retried_batch_writes_no_duplicates_and_keeps_the_first_write(store: RequestLogStore) -> None:
    store.insert([record(n) for n in range(10)])
    store.insert([record(n, status=500) for n in range(15)])
    assert store.count() == 15
    assert store.get("req-000003").status == 200
    assert store.get("req-000012").status == 500


def test_recent_gives_one_alias_newest_first(store: RequestLogStore) -> None:
    store.insert([record(n, alias="support" if n % 2 else "cooking") for n in range(20)])
    recent = store.recent("support", limit=4)
    assert [r.id for r in recent] == ["req-000019", "req-000017", "req-000015", "req-000013"]
    since = store.recent("cooking", since=1_700_000_000.0 + 14)
    assert [r.id for r in since] == ["req-000018", "req-000016", "req-000014"]
    assert store.count() == 20
    assert store.count("support") == 10


def test_retention_by_age_deletes_only_older_records(store: RequestLogStore) -> None:
    now = 1_700_000_100.0
    store.insert([record(n, at=now - n) for n in range(100)])
    assert store.enforce_retention(max_age_s=30.5, max_rows=None, now=now) == 69
    assert stored_ids(store) == {f"req-{n:06d}" for n in range(31)}


def test_retention_by_rows_keeps_the_newest_and_is_stable(store: RequestLogStore, monkeypatch) -> None:
    monkeypatch.setattr(request_log_store, "_RETENTION_CHUNK", 3)  # several delete transactions
    # Ties on time are broken by id, so the boundary is exact even when records share a timestamp.
    store.insert([record(n, at=1_700_000_000.0 + n // 2) for n in range(20)])
    assert store.enforce_retention(max_age_s=None, max_rows=7, now=0) == 13
    assert stored_ids(store) == {f"req-{n:06d}" for n in range(13, 20)}
    assert store.enforce_retention(max_age_s=None, max_rows=7, now=0) == 0
    assert store.enforce_retention(max_age_s=None, max_rows=100, now=0) == 0


def test_a_newer_schema_is_refused_and_the_same_one_reopens(store: RequestLogStore, db_url: str) -> None:
    RequestLogStore(db_url).close()  # the same version: opening again is a no-op
    with store.engine.begin() as conn:
        conn.execute(sa.update(schema_versions).values(version=99))
    with pytest.raises(SchemaError, match="version 99"):
        RequestLogStore(db_url)


# The writer


async def test_records_are_written_in_bounded_batches(store: RequestLogStore, start_writer: StartWriter) -> None:
    batches: list[list[str]] = []
    writer = start_writer(fast_config(batch_size=50), on_commit=batches.append)
    assert all(writer.submit(record(n)) for n in range(500))
    await writer.flush()
    assert writer.written == 500 and writer.accepted == 500 and writer.dropped == 0
    assert store.count() == 500
    assert max(len(batch) for batch in batches) == 50
    assert len(batches) <= 12  # full batches, not one commit per record
    assert [record_id for batch in batches for record_id in batch] == [f"req-{n:06d}" for n in range(500)]


async def test_a_partial_batch_waits_at_most_max_delay(store: RequestLogStore, start_writer: StartWriter) -> None:
    committed = asyncio.Event()
    writer = start_writer(fast_config(max_delay_s=0.2), on_commit=lambda ids: committed.set())
    started = time.perf_counter()
    writer.submit(record(1))
    await asyncio.wait_for(committed.wait(), timeout=5)
    assert 0.15 <= time.perf_counter() - started < 2.0
    assert store.get("req-000001") is not None


async def test_close_writes_everything_accepted(store: RequestLogStore, start_writer: StartWriter) -> None:
    writer = start_writer(fast_config(batch_size=64, max_delay_s=10))
    for n in range(300):
        writer.submit(record(n))
    await writer.close()
    assert store.count() == 300 and writer.written == 300
    assert writer.submit(record(999)) is False and writer.dropped == 1


async def test_a_batch_whose_commit_answer_was_lost_is_retried_without_duplicates(
    store: RequestLogStore, start_writer: StartWriter
) -> None:
    real_insert = store.insert
    calls = 0

    def commit_then_fail(records: list[RequestRecord]) -> None:
        nonlocal calls
        calls += 1
        real_insert(records)
        if calls == 1:
            raise sa.exc.OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    store.insert = commit_then_fail
    writer = start_writer(fast_config(batch_size=100))
    for n in range(100):
        writer.submit(record(n))
    await writer.flush()
    assert writer.failed_batches == 1 and writer.written == 100
    assert store.count() == 100


async def test_a_record_the_store_cannot_hold_is_rejected_alone(
    store: RequestLogStore, start_writer: StartWriter, caplog: pytest.LogCaptureFixture
) -> None:
    writer = start_writer(fast_config())
    for n in range(10):
        writer.submit(record(n, prompt_tokens=2**70 if n == 4 else 10, prompt="words of a user"))
    await writer.flush()
    assert writer.rejected == 1 and writer.written == 9
    assert stored_ids(store) == {f"req-{n:06d}" for n in range(10) if n != 4}
    assert "req-000004" in caplog.text and "words of a user" not in caplog.text  # errors never quote prompts


async def test_the_writer_runs_retention_periodically(store: RequestLogStore, start_writer: StartWriter) -> None:
    writer = start_writer(fast_config(max_rows=10, retention_interval_s=0.05))
    for n in range(50):
        writer.submit(record(n))
    await writer.flush()
    async with asyncio.timeout(5):
        while writer.expired < 40:
            await asyncio.sleep(0.02)
    assert stored_ids(store) == {f"req-{n:06d}" for n in range(40, 50)}


def lock_store(store: RequestLogStore, db_url: str):
    """Hold the write lock of the log from another connection, as another process would."""
    if store.dialect == "sqlite":
        conn = sqlite3.connect(sa.make_url(db_url).database, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
    else:
        url = sa.make_url(db_url)
        conn = psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
        conn.execute("LOCK TABLE request_log IN ACCESS EXCLUSIVE MODE")
    return conn


async def test_a_locked_store_never_blocks_submit_and_drops_are_counted(
    store: RequestLogStore, db_url: str, start_writer: StartWriter
) -> None:
    writer = start_writer(fast_config(queue_size=200, batch_size=50, max_delay_s=0.01))
    lock = lock_store(store, db_url)
    accepted: list[str] = []
    slowest = 0.0
    try:
        for n in range(1000):
            started = time.perf_counter()
            ok = writer.submit(record(n))
            slowest = max(slowest, time.perf_counter() - started)
            if ok:
                accepted.append(f"req-{n:06d}")
            if n % 100 == 99:
                await asyncio.sleep(0.05)  # let the writer hit the lock (SQLite: busy timeout, retries)
        # A submit that waited on the store would take the whole busy timeout (SQLite) or forever (PostgreSQL);
        # the bound leaves room for a loaded CI machine descheduling the test.
        assert slowest < 0.05, f"submit took {slowest * 1000:.2f} ms while the store was locked"
        # One batch is in the writer's hands, the queue holds the rest; everything else was refused and counted.
        assert len(accepted) <= 200 + 50
        assert writer.dropped == 1000 - len(accepted) > 0
        assert writer.written == 0
        if store.dialect == "sqlite":  # PostgreSQL waits on the lock; SQLite gives up after its busy timeout
            assert writer.failed_batches > 0
    finally:
        lock.rollback()
        lock.close()
    await asyncio.wait_for(writer.flush(), timeout=15)
    assert writer.written == len(accepted)
    assert stored_ids(store) == set(accepted)


# Crashes: what was acknowledged survives, what was not is written later or counted


async def test_killing_postgresql_mid_traffic_loses_nothing_acknowledged(pg_cluster: PgCluster) -> None:
    store = RequestLogStore(pg_cluster.create_database(f"crash_{uuid.uuid4().hex[:12]}"))
    acknowledged: list[str] = []
    config = fast_config(queue_size=400, batch_size=50, max_delay_s=0.02, retry_max_s=0.1)
    writer = RequestLogWriter(store, config, on_commit=acknowledged.extend)
    writer.start()
    accepted: list[str] = []
    slowest = 0.0
    serving = True

    async def traffic() -> None:
        """A request every millisecond or so, each logged the way the gateway will."""
        nonlocal slowest
        n = 0
        while serving:
            started = time.perf_counter()
            if writer.submit(record(n)):
                accepted.append(f"req-{n:06d}")
            slowest = max(slowest, time.perf_counter() - started)
            n += 1
            await asyncio.sleep(0.001)

    requests = asyncio.create_task(traffic())
    try:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(pg_cluster.stop, "immediate")  # traffic goes on while the server dies
        acknowledged_at_kill = set(acknowledged)
        await asyncio.sleep(1.0)
        assert writer.failed_batches > 0 and writer.dropped > 0  # the store is down and the queue filled up
        written_while_down = writer.written
        await asyncio.sleep(0.2)
        assert writer.written == written_while_down
    finally:
        await asyncio.to_thread(pg_cluster.start)
    await asyncio.sleep(0.5)
    serving = False
    await requests
    await asyncio.wait_for(writer.flush(), timeout=20)

    assert slowest < 0.05, f"submit took {slowest * 1000:.2f} ms while the store was down for over a second"
    stored = stored_ids(store)
    assert acknowledged_at_kill and acknowledged_at_kill <= stored
    # Every accepted record was written after recovery, every refused one was counted: nothing silent.
    assert stored == set(accepted) == set(acknowledged)
    assert writer.written == writer.accepted == len(accepted)
    await writer.close()
    store.close()


CHILD = """
import asyncio, sys
from monitor.request_log import RequestLogSettings, RequestRecord
from monitor.request_log_store import RequestLogStore
from monitor.request_log_writer import RequestLogWriter

async def main():
    config = RequestLogSettings(batch_size=20, max_delay_s=0.01, max_age_days=None, max_rows=None)
    acknowledge = lambda ids: print(*ids, sep="\\n", flush=True)
    writer = RequestLogWriter(RequestLogStore(sys.argv[1]), config, on_commit=acknowledge)
    writer.start()
    for n in range(10**9):
        writer.submit(RequestRecord(id=f"r{n}", time=n, alias="a", route="/v1/completions", status=200, latency_ms=1))
        await asyncio.sleep(0.0005)

asyncio.run(main())
"""


async def test_a_killed_gateway_process_keeps_everything_it_acknowledged(db_url: str) -> None:
    RequestLogStore(db_url).close()  # create the schema before the child races to
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, db_url, stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[3]
    )
    acknowledged: set[str] = set()
    async with asyncio.timeout(30):
        while len(acknowledged) < 300:
            line = await child.stdout.readline()
            assert line, "the child exited before acknowledging 300 records"
            acknowledged.add(line.decode().strip())
        child.kill()  # SIGKILL: no flush, no close, a batch may be mid-commit
        acknowledged.update(line.decode().strip() for line in (await child.stdout.read()).splitlines())
        await child.wait()
    store = RequestLogStore(db_url)
    assert acknowledged <= stored_ids(store)
    store.close()
