"""`driftgate serve` as a user runs it: a real granian server process in front of a fake upstream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, link_shared_models, relay_started_workers

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
DRIFTGATE = [sys.executable, "-m", "gateway.cli"]


@asynccontextmanager
async def serve_process(config: Path, port: int) -> AsyncIterator[httpx.AsyncClient]:
    """The server once ``/readyz`` answers and every worker the config asks for has started."""
    workers = yaml.safe_load(config.read_text()).get("workers", 1)
    env = {**os.environ, "DRIFTGATE_PORT": str(port)}
    command = [*DRIFTGATE, "serve", "--config", str(config)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    started = relay_started_workers(process)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(600):
                try:
                    if (await client.get("/readyz")).status_code == 200 and len(started) == workers:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, "driftgate serve exited"
                await asyncio.sleep(0.1)
            yield client
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0


def write_config(tmp_path: Path, upstream_url: str, workers: int = 1) -> Path:
    config = tmp_path / "driftgate.yaml"
    # Its own home: the state database is per test, never the checkout's .driftgate/ (its models are).
    link_shared_models(tmp_path / "home")
    config.write_text(
        f"home: {tmp_path / 'home'}\nport: 1\nworkers: {workers}\n"
        f"models:\n  - name: m\n    backends: ['{upstream_url}']\n"
    )
    return config


async def test_serve_runs_the_config_with_env_overrides(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()
    async with serve_process(write_config(tmp_path, upstream.url), free_port()) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
        async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as streamed:
            raw = b"".join([chunk async for chunk in streamed.aiter_raw()])
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello from fake."
    assert raw.endswith(b"data: [DONE]\n\n")


async def test_plain_request_is_cancelled_upstream_when_the_client_leaves(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()
    upstream.behaviour.delay_s = 10
    async with serve_process(write_config(tmp_path, upstream.url), free_port()) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/v1/chat/completions", json=CHAT, timeout=0.5)
        for _ in range(50):
            if upstream.observed.cancelled:
                break
            await asyncio.sleep(0.1)
    assert upstream.observed.cancelled == 1


@pytest.mark.parametrize(
    ("config_text", "message"),
    [("port: 9\n", "no models configured"), ("port: [\n", "cannot read config"), ("prot: 1\n", "prot")],
)
def test_serve_refuses_bad_configs_clearly(tmp_path: Path, config_text: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(config_text)
    result = subprocess.run([*DRIFTGATE, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split())


async def test_metrics_add_up_across_workers(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()
    async with serve_process(write_config(tmp_path, upstream.url, workers=2), free_port()) as client:
        for _ in range(20):
            # A new connection each time, so the requests land on both workers.
            response = await client.post("/v1/chat/completions", json=CHAT, headers={"connection": "close"})
            assert response.status_code == 200
        text = (await client.get("/metrics")).text
    answered = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "driftgate_requests_total"
        and sample.labels == {"route": "/v1/chat/completions", "model": "m", "status": "200"}
    ]
    assert answered == [20.0]


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
async def test_workers_stop_when_serve_is_killed_outright(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()
    port = free_port()
    env = {**os.environ, "DRIFTGATE_PORT": str(port)}
    config = write_config(tmp_path, upstream.url, workers=2)
    process = subprocess.Popen([*DRIFTGATE, "serve", "--config", str(config)], env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(600):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            workers = psutil.Process(process.pid).children()
            assert len(workers) == 2
            process.kill()  # SIGKILL: no signal handler, no shutdown of its own
            process.wait()
            _, alive = await asyncio.to_thread(psutil.wait_procs, workers, timeout=15)
            assert not alive, "granian workers outlived the killed server process"
            with pytest.raises(httpx.TransportError):
                await client.get("/readyz")
    finally:
        if process.poll() is None:
            process.kill()
