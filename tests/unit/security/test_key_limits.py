"""Per-key concurrency and tokens per minute, the in-flight cap, and the keys table's in-place migration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.errors import OpenAIError
from gateway.security.auth import RateLimiter
from gateway.security.keys import SCHEMA_COMPONENT, KeyStore, api_keys
from monitor.database import schema_versions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}")
    yield store
    store.close()


def refused(call, *args) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        call(*args)
    return caught.value


async def refused_async(pending) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        await pending
    return caught.value


async def test_concurrency_cap_counts_requests_until_they_are_released(store: KeyStore) -> None:
    limiter = RateLimiter()
    key, _ = store.create("two-at-once", "inference", max_concurrent=2)
    first, second = limiter.enter(None), limiter.enter(None)
    await first.admit(key)
    await second.admit(key)
    third = limiter.enter(None)
    error = await refused_async(third.admit(key))
    assert error.status_code == 429 and error.body.error.code == "rate_limit_exceeded" and error.headers["retry-after"]
    third.release()
    first.release()
    first.release()  # a second release changes nothing
    fourth = limiter.enter(None)
    await fourth.admit(key)
    assert (await refused_async(limiter.enter(None).admit(key))).status_code == 429


def test_in_flight_cap_is_a_fast_503_and_frees_on_release() -> None:
    limiter = RateLimiter()
    held = [limiter.enter(2), limiter.enter(2)]
    error = refused(limiter.enter, 2)
    assert error.status_code == 503 and error.code == "server_overloaded" and error.headers["retry-after"] == "1"
    held[0].release()
    limiter.enter(2)
    assert limiter.in_flight == 2


async def test_tokens_per_minute_charge_the_estimate_then_actual_usage(store: KeyStore) -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    key, _ = store.create("tpm", "inference", tpm=100)
    first = limiter.enter(None)
    await first.admit(key)
    await first.reserve(60)
    second = limiter.enter(None)
    await second.admit(key)
    error = await refused_async(second.reserve(60))  # 60 reserved + 60 > 100
    assert error.status_code == 429 and int(error.headers["retry-after"]) == 60
    first.release(used_tokens=10)  # it used far less than it could have
    clock.now += 15
    await second.reserve(60)
    second.release(used_tokens=70)
    third = limiter.enter(None)
    await third.admit(key)
    error = await refused_async(third.reserve(30))  # 10 + 70 + 30 > 100: wait until the first 10 age out
    assert int(error.headers["retry-after"]) == 45
    clock.now += 45
    await third.reserve(30)
    too_big = limiter.enter(None)
    await too_big.admit(key)
    assert (await refused_async(too_big.reserve(101))).status_code == 429


def test_a_version_1_keys_table_is_migrated_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    old_metadata = sa.MetaData()
    old_table = sa.Table(  # the table as version 1 created it
        "api_keys", old_metadata,
        sa.Column("id", sa.String(32), primary_key=True), sa.Column("name", sa.Text, nullable=False),
        sa.Column("salt", sa.LargeBinary, nullable=False), sa.Column("digest", sa.LargeBinary, nullable=False),
        sa.Column("scope", sa.String(16), nullable=False), sa.Column("adapters", sa.Text),
        sa.Column("rpm", sa.Integer), sa.Column("tpm", sa.Integer), sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double), sa.Column("revoked_at", sa.Double),
    )  # fmt: skip
    with engine.begin() as conn:
        old_metadata.create_all(conn)
        schema_versions.create(conn)
        conn.execute(sa.insert(schema_versions).values(component=SCHEMA_COMPONENT, version=1))
    engine.dispose()
    # A key made by the old code: create one with today's store on a scratch table, then copy its row over.
    scratch = KeyStore(f"sqlite:///{tmp_path / 'scratch.db'}")
    old_key, token = scratch.create("legacy", "inference", rpm=5)
    with scratch.engine.connect() as conn:
        row = conn.execute(sa.select(api_keys)).mappings().one()
    scratch.close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(old_table).values({k: v for k, v in row.items() if k != "max_concurrent"}))
    engine.dispose()

    store = KeyStore(url)
    assert store.verify(token) == old_key
    new_key, _ = store.create("capped", "inference", max_concurrent=3)
    assert [key.max_concurrent for key in store.list()] == [None, 3]
    store.close()
    KeyStore(url).close()  # opening an already-migrated database is a no-op
    with sa.create_engine(url).connect() as conn:
        version = conn.execute(sa.select(schema_versions.c.version)).scalar_one()
    assert version == 2


def test_keys_create_takes_max_concurrent(tmp_path: Path) -> None:
    env = {**os.environ, "DRIFTGATE_HOME": str(tmp_path)}
    command = [sys.executable, "-m", "gateway.cli", "keys", "create", "--name", "batch", "--max-concurrent", "4"]
    created = subprocess.run(command, env=env, capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    store = KeyStore(f"sqlite:///{tmp_path / 'driftgate.db'}")
    assert store.verify(created.stdout.strip()).max_concurrent == 4
    store.close()
    zero = subprocess.run([*command[:-1], "0"], env=env, capture_output=True, text=True)
    assert zero.returncode == 2
