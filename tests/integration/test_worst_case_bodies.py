"""One client sending the heaviest bodies each endpoint accepts (and some it refuses) to a real
`driftgate serve` with its default guards, beside a steady stream of ordinary requests: the ordinary
requests' p99 stays within 2x of its value without the attack, and `/healthz` answers within 100 ms
throughout."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.attack import attack
from bench.gateway import wait_http
from tests.conftest import free_port
from tests.integration.test_graceful_shutdown import start_serve

REPO = Path(__file__).resolve().parents[2]
ORDINARY = {"model": "m", "messages": [{"role": "user", "content": "What is a good lentil soup recipe?"}]}


@pytest.fixture
def mock_upstream() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.mock_upstream", "--port", str(port)], cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout_s=20)
        yield url
    finally:
        process.kill()
        process.wait()


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def ordinary_traffic(client: httpx.AsyncClient, seconds: float, concurrency: int = 4) -> list[float]:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def one_client() -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await client.post("/v1/chat/completions", json=ORDINARY)
            assert response.status_code == 200, response.text
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)

    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return latencies


async def health_watch(client: httpx.AsyncClient, stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    while not stop.is_set():
        started = time.perf_counter()
        assert (await client.get("/healthz")).status_code == 200
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)
    return latencies


async def test_worst_case_bodies_do_not_stall_the_worker(tmp_path: Path, mock_upstream: str) -> None:
    port = free_port()
    process = await start_serve(tmp_path, mock_upstream, port)
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as attack_client,
        ):
            await ordinary_traffic(client, 1)  # warm up
            baseline = await ordinary_traffic(client, 6)

            stop = asyncio.Event()
            health = asyncio.ensure_future(health_watch(client, stop))
            attack_task = asyncio.ensure_future(attack(attack_client, "m", stop, connections=3))
            await asyncio.sleep(1)  # the attack under way
            attacked = await ordinary_traffic(client, 6)
            stop.set()
            answers = await attack_task
            health_latencies = await health
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(
        f"p99 ordinary {p99(baseline) * 1000:.1f} ms alone, {p99(attacked) * 1000:.1f} ms under attack; "
        f"healthz max {max(health_latencies) * 1000:.1f} ms; attack answers {answers}"
    )
    assert p99(attacked) <= 2 * p99(baseline), (p99(baseline), p99(attacked))
    assert max(health_latencies) < 0.1, max(health_latencies)
    assert len(health_latencies) > 50
    # At the caps a body is served, or refused with guard_timeout when the heavy lane's queue outlasts its
    # budget (on a loaded machine the costliest bodies do); past them it is refused at once.
    assert {(a.status, a.code) for a in answers if a.within_caps} <= {(200, None), (503, "guard_timeout")}, answers
    assert {(a.status, a.code) for a in answers if not a.within_caps} == {(400, "invalid_request")}, answers
    assert any(a.within_caps for a in answers) and any(not a.within_caps for a in answers), answers
