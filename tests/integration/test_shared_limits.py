"""A real `driftgate serve --workers 2` (granian) over a fake upstream: a key's requests per minute and its
concurrency cap hold across both workers, because they are counted in the state database. A new connection per
request (``connection: close``) spreads the requests over the workers, and each worker's own metrics file shows
that both took part."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.security.keys import KeyStore
from tests.conftest import free_port, link_shared_models
from tests.unit.test_cli_serve import CHAT, serve_process


def two_workers(tmp_path: Path, upstream_url: str, shared: str = "auto") -> Path:
    config = tmp_path / "driftgate.yaml"
    link_shared_models(tmp_path)
    config.write_text(
        f"port: 1\nworkers: 2\nhome: {tmp_path}\nlimits:\n  shared: {shared}\n"
        f"models:\n  - name: m\n    backends: ['{upstream_url}']\n"
    )
    return config


def key(tmp_path: Path, **limits: int) -> dict[str, str]:
    store = KeyStore(f"sqlite:///{tmp_path / 'driftgate.db'}")
    try:
        _, token = store.create("limited", "inference", **limits)
    finally:
        store.close()
    return {"authorization": f"Bearer {token}", "connection": "close"}


async def statuses(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> list[int]:
    """``count`` requests at once, each on its own connection: the workers accept them side by side."""
    answers = await asyncio.gather(
        *(client.post("/v1/chat/completions", json=CHAT, headers=headers) for _ in range(count))
    )
    return [answer.status_code for answer in answers]


def answered_by_worker(metrics_dir: Path) -> list[float]:
    """Chat requests answered (any status) by each worker process, from its own multiprocess metrics file."""
    per_worker = []
    for path in sorted(metrics_dir.glob("counter_*.db")):
        total = sum(
            sample.value
            for metric in MultiProcessCollector._read_metrics([str(path)]).values()
            for sample in metric.samples
            if sample.name == "driftgate_requests_total" and dict(sample.labels).get("route") == "/v1/chat/completions"
        )
        per_worker.append(total)
    return per_worker


@pytest.fixture
def metrics_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the serve process's workers keep their metrics, one file each (so the test sees who served what)."""
    path = tmp_path / "metrics"
    path.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
    return path


async def test_requests_per_minute_hold_across_workers(tmp_path: Path, upstreams, metrics_dir: Path) -> None:
    upstream = await upstreams()
    upstream.behaviour.delay_s = 0.2
    headers = key(tmp_path, rpm=5)
    async with serve_process(two_workers(tmp_path, upstream.url), free_port()) as client:
        answered = []
        for _ in range(6):
            answered += await statuses(client, headers, 3)
        metrics = (await client.get("/metrics")).text
        per_worker = answered_by_worker(metrics_dir)
    assert answered.count(200) == 5 and answered.count(429) == 13, answered
    assert 'driftgate_rejected_requests_total{reason="rpm"} 13.0' in metrics
    assert sum(n > 0 for n in per_worker) == 2 and sum(per_worker) == 18, per_worker  # both workers took part


async def test_a_concurrency_cap_of_one_holds_across_workers(tmp_path: Path, upstreams, metrics_dir: Path) -> None:
    upstream = await upstreams()
    upstream.behaviour.delay_s = 1.5
    headers = key(tmp_path, max_concurrent=1)
    async with serve_process(two_workers(tmp_path, upstream.url), free_port()) as client:
        for _ in range(2):  # and again once the first round has given its place back
            answers = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=CHAT, headers=headers) for _ in range(6))
            )
            codes = sorted(answer.status_code for answer in answers)
            assert codes == [200] + [429] * 5, codes
            await asyncio.sleep(0.3)
        per_worker = answered_by_worker(metrics_dir)
    assert sum(n > 0 for n in per_worker) == 2 and sum(per_worker) == 12, per_worker
