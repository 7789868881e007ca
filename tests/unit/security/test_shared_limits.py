"""Per-key limits shared through the state database, on real SQLite and a real PostgreSQL server: the counters,
the leases, concurrent callers from threads, two limiters ("workers") on one database, and failing open."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.config import AdaptersSettings, RequestLimitSettings, Settings
from gateway.errors import OpenAIError
from gateway.security.auth import RateLimiter, Ticket
from gateway.security.keys import ApiKey
from gateway.security.shared_limits import SharedCounters, limit_counts, retry_after, shared_mode
from monitor import metrics

MINUTE = 29_000_000 * 60.0  # the start of some minute, in wall-clock seconds


@pytest.fixture
def counters(url: str) -> SharedCounters:
    counters = SharedCounters(url, timeout_s=10)
    yield counters
    counters.close()


def count(counters: SharedCounters, key_id: str, kind: str) -> dict[int, int]:
    with counters.engine.connect() as conn:
        rows = conn.execute(
            sa.select(limit_counts.c.bucket, limit_counts.c.n).where(
                limit_counts.c.key_id == key_id, limit_counts.c.kind == kind
            )
        )
        return dict(rows.all())


def test_requests_per_minute_slide_over_two_buckets(counters: SharedCounters) -> None:
    for i in range(5):
        assert counters.admit("k", "rpm", 1, 5, MINUTE + i) is None
    wait = counters.admit("k", "rpm", 1, 5, MINUTE + 10)
    assert wait == pytest.approx(62)  # this minute's 5 must fade: until 20 % into the next minute
    assert count(counters, "k", "rpm") == {int(MINUTE // 60): 5}  # a refusal counts nothing
    assert counters.admit("other", "rpm", 1, 5, MINUTE + 10) is None  # other keys are apart
    # Half-way through the next minute the previous one weighs half: 2.5 + 2 fits, a third does not.
    assert counters.admit("k", "rpm", 1, 5, MINUTE + 90) is None
    assert counters.admit("k", "rpm", 1, 5, MINUTE + 90) is None
    assert counters.admit("k", "rpm", 1, 5, MINUTE + 90) == pytest.approx(6)  # until 5 × (1 - f) ≤ 2
    # Two minutes on, the first minute is out of the window altogether.
    for _ in range(3):
        assert counters.admit("k", "rpm", 1, 5, MINUTE + 120 + 59) is None


def test_tokens_per_minute_take_an_estimate_then_the_actual_usage(counters: SharedCounters) -> None:
    assert counters.admit("k", "tpm", 60, 100, MINUTE) is None
    assert counters.admit("k", "tpm", 60, 100, MINUTE + 1) is not None
    counters.adjust("k", "tpm", int(MINUTE // 60), 10 - 60)  # it used 10
    assert counters.admit("k", "tpm", 60, 100, MINUTE + 2) is None
    assert counters.admit("k", "tpm", 101, 100, MINUTE + 3) == 60  # more than the limit: never fits
    counters.adjust("k", "tpm", int(MINUTE // 60), -1000)
    assert count(counters, "k", "tpm") == {int(MINUTE // 60): 0}  # never below zero


def test_retry_after_is_when_the_window_has_room_again() -> None:
    assert retry_after(current=0, previous=10, elapsed_s=30, amount=1, limit=5) == pytest.approx(6)
    assert retry_after(current=5, previous=0, elapsed_s=15, amount=1, limit=5) == pytest.approx(57)
    assert retry_after(current=5, previous=0, elapsed_s=15, amount=6, limit=5) == 60


def test_concurrent_increments_from_threads_neither_lose_counts_nor_overshoot(counters: SharedCounters) -> None:
    now = time.time()
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: counters.admit("k", "rpm", 1, 100, now), range(240)))
        counted = list(pool.map(lambda _: counters.admit("unlimited", "rpm", 1, 10**9, now), range(240)))
    assert sum(outcome is None for outcome in outcomes) == 100
    assert count(counters, "k", "rpm") == {int(now // 60): 100}
    assert all(outcome is None for outcome in counted)
    assert count(counters, "unlimited", "rpm") == {int(now // 60): 240}


def test_leases_cap_concurrency_across_threads_and_lapse(counters: SharedCounters) -> None:
    now = time.time()
    barrier = threading.Barrier(8)

    def acquire(i: int) -> bool:
        barrier.wait()
        return counters.acquire("k", f"lease{i}", 3, now, 30)

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(acquire, range(8)))
    assert sum(got) == 3 and counters.in_flight("k", now) == 3
    held = [f"lease{i}" for i, ok in enumerate(got) if ok]
    counters.release(held[:1])
    assert counters.acquire("k", "again", 3, now, 30)
    assert not counters.acquire("k", "refused", 3, now, 30)
    # A crashed worker renews nothing: its leases lapse; renewed ones stay.
    counters.renew(["again"], now + 20, 30)
    assert counters.in_flight("k", now + 31) == 1
    assert counters.acquire("k", "after", 3, now + 31, 30)
    counters.purge(now + 31)
    assert counters.in_flight("k", now) == 2


def limiter_on(counters: SharedCounters) -> RateLimiter:
    limiter = RateLimiter()
    limiter.share(counters, timeout_s=10, lease_s=30)
    return limiter


async def refused(call) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        await call
    return caught.value


class Tickets(list):
    """Every ticket a test takes, released at its end (the in-flight gauge is process-wide)."""

    def enter(self, limiter: RateLimiter) -> Ticket:
        self.append(limiter.enter(None))
        return self[-1]

    def release_all(self) -> None:
        for ticket in self:
            ticket.release()


async def test_two_workers_share_a_keys_limits(counters: SharedCounters) -> None:
    worker_a, worker_b = limiter_on(counters), limiter_on(counters)
    tickets = Tickets()
    key = ApiKey("k1", "shared", "inference", rpm=4, max_concurrent=2)
    admitted = []
    for worker in (worker_a, worker_b, worker_a, worker_b):
        admitted.append(tickets.enter(worker))
        await admitted[-1].admit(key)
        admitted[-1].release()
    fifth = tickets.enter(worker_b)
    error = await refused(fifth.admit(key))
    assert error.status_code == 429 and "requests per minute" in error.body.error.message
    fifth.release()  # its concurrency lease too (the route releases every ticket when its request ends)

    capped = ApiKey("k2", "capped", "inference", max_concurrent=2)
    first, second = tickets.enter(worker_a), tickets.enter(worker_b)
    await first.admit(capped)
    await second.admit(capped)
    error = await refused(tickets.enter(worker_a).admit(capped))
    assert error.status_code == 429 and "concurrent" in error.body.error.message
    assert sorted(worker_a.held_leases() + worker_b.held_leases()) == sorted([first.lease, second.lease])
    second.release()
    await asyncio.sleep(0.2)  # the release runs off the event loop
    third = tickets.enter(worker_a)
    await third.admit(capped)

    metered = ApiKey("k3", "metered", "inference", tpm=100)
    one, two = tickets.enter(worker_a), tickets.enter(worker_b)
    await one.admit(metered)
    await one.reserve(60)
    await two.admit(metered)
    assert (await refused(two.reserve(60))).status_code == 429
    one.release(used_tokens=10)
    await asyncio.sleep(0.2)
    await two.reserve(60)
    tickets.release_all()


async def test_an_unanswering_store_fails_open_to_the_workers_own_limits(tmp_path: Path) -> None:
    counters = SharedCounters(f"sqlite:///{tmp_path / 'gateway.db'}", timeout_s=1)
    limiter = limiter_on(counters)
    with counters.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE limit_counts"))
        conn.execute(sa.text("DROP TABLE limit_leases"))
    failures = metrics.SHARED_LIMIT_FAILURES.labels("rpm")._value.get()
    key = ApiKey("k", "limited", "inference", rpm=2, max_concurrent=5)
    tickets = Tickets()
    for _ in range(2):
        await tickets.enter(limiter).admit(key)
    error = await refused(tickets.enter(limiter).admit(key))  # the worker's own window still holds
    tickets.release_all()
    assert error.status_code == 429
    assert metrics.SHARED_LIMIT_FAILURES.labels("concurrency")._value.get() >= 3
    assert metrics.SHARED_LIMIT_FAILURES.labels("rpm")._value.get() == failures  # concurrency fell back first
    counters.close()


def test_shared_mode_follows_the_config() -> None:
    postgres = AdaptersSettings(url="postgresql+psycopg://u@h/db")
    assert not shared_mode(Settings())
    assert shared_mode(Settings(workers=2))
    assert shared_mode(Settings(adapters=postgres))
    assert not shared_mode(Settings(adapters=AdaptersSettings(url="sqlite:///x.db")))
    assert not shared_mode(Settings(workers=4, limits=RequestLimitSettings(shared=False)))
    assert shared_mode(Settings(limits=RequestLimitSettings(shared=True)))
