"""The console's state in the gateway's database, on SQLite and on a real PostgreSQL server: the Litestar store
that holds sessions (expiry, renewal, namespaces, purging) and the CSRF secret that concurrent first starts
agree on."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa

from gateway.console.csrf_secret import csrf_secret
from gateway.console.database_store import DatabaseStore, store_entries
from monitor.database import create_engine


@pytest.fixture
def engine(db_url: str):
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


async def test_values_round_trip_and_are_replaced_in_place(engine) -> None:
    store = DatabaseStore.open(engine, "sessions")
    assert await store.get("a") is None and not await store.exists("a") and await store.expires_in("a") is None
    await store.set("a", b"\x00binary\xff", expires_in=100)
    assert await store.get("a") == b"\x00binary\xff" and await store.exists("a")
    assert 98 <= await store.expires_in("a") <= 100
    await store.set("a", "text", expires_in=timedelta(hours=1))  # a str is stored as UTF-8; the expiry replaced
    assert await store.get("a") == b"text" and 3590 <= await store.expires_in("a") <= 3600
    await store.set("forever", b"x")  # no expiry (as an expiry of 0, in Litestar's stores)
    await store.set("zero", b"y", expires_in=0)
    assert await store.get("forever", renew_for=5) == b"x" and await store.expires_in("forever") is None
    assert await store.exists("zero") and await store.expires_in("zero") is None
    await store.delete("a")
    await store.delete("never-there")
    assert await store.get("a") is None and await store.get("forever") == b"x"
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(store_entries)).scalar_one() == 2


async def test_an_expired_value_is_gone_and_deleted_when_read_and_renewal_extends_it(engine) -> None:
    store = DatabaseStore.open(engine, "sessions")
    await store.set("short", b"1", expires_in=1)
    await store.set("renewed", b"2", expires_in=1)
    assert await store.get("renewed", renew_for=60) == b"2" and await store.expires_in("renewed") >= 58
    await asyncio.sleep(1.1)
    assert not await store.exists("short") and await store.expires_in("short") is None
    with engine.connect() as conn:  # still a row until something reads it
        assert conn.execute(sa.select(store_entries.c.key).where(store_entries.c.key == "short")).first()
    assert await store.get("short") is None
    with engine.connect() as conn:
        assert not conn.execute(sa.select(store_entries.c.key).where(store_entries.c.key == "short")).first()
    assert await store.get("renewed") == b"2"


async def test_namespaces_are_kept_apart_and_delete_all_takes_children_too(engine) -> None:
    sessions, other = DatabaseStore.open(engine, "sessions"), DatabaseStore.open(engine, "sessions_old")
    child = sessions.with_namespace("child")
    assert child.namespace == "sessions/child"
    await sessions.set("k", b"parent")
    await child.set("k", b"child")
    await other.set("k", b"other")
    assert (await sessions.get("k"), await child.get("k"), await other.get("k")) == (b"parent", b"child", b"other")
    await child.delete_all()
    assert await child.get("k") is None and await sessions.get("k") == b"parent"
    await child.set("k", b"child")
    await sessions.delete_all()
    assert await sessions.get("k") is None and await child.get("k") is None
    assert await other.get("k") == b"other"  # a namespace that only starts with the same letters is another one
    with pytest.raises(ValueError):
        DatabaseStore(engine, "with/slash")


async def test_expired_entries_are_purged_now_and_then_on_a_write(engine) -> None:
    store = DatabaseStore.open(engine, "sessions", purge_every_s=3600)
    past = time.time() - 10
    with engine.begin() as conn:  # left by replicas whose visitors never came back
        conn.execute(
            sa.insert(store_entries),
            [{"namespace": "sessions", "key": f"old{i}", "value": b"x", "expires_at": past} for i in range(5)],
        )
    await store.set("live", b"1", expires_in=60)  # the first write of this process purges
    with engine.connect() as conn:
        keys = set(conn.execute(sa.select(store_entries.c.key)).scalars())
    assert keys == {"live"}
    with engine.begin() as conn:
        conn.execute(sa.insert(store_entries).values(namespace="sessions", key="old", value=b"x", expires_at=past))
    await store.set("live", b"2", expires_in=60)  # within purge_every_s of the last purge: left alone
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(store_entries.c.key)).scalars()) == {"live", "old"}
    assert store.purge_expired() == 1 and await store.get("live") == b"2"


async def test_a_failed_purge_does_not_fail_the_write(engine, monkeypatch, caplog) -> None:
    store = DatabaseStore.open(engine, "sessions")

    def unreachable(_: DatabaseStore) -> int:
        raise sa.exc.OperationalError("DELETE", {}, Exception("server closed the connection"))

    monkeypatch.setattr(DatabaseStore, "purge_expired", unreachable)
    await store.set("live", b"1", expires_in=60)
    assert await store.get("live") == b"1" and "cannot purge expired store entries" in caplog.text


def test_concurrent_first_starts_agree_on_one_csrf_secret(db_url: str) -> None:
    """Eight processes' worth of engines, each making the schema and offering its own secret at once."""

    def start() -> str:
        engine = create_engine(db_url)
        try:
            return csrf_secret(engine)
        finally:
            engine.dispose()

    with ThreadPoolExecutor(8) as pool:
        found = set(pool.map(lambda _: start(), range(8)))
    assert len(found) == 1 and len(found.pop()) == 64
    assert start() == start()  # and it stays
