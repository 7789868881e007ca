"""SIGTERM to a real `driftgate serve` (granian) while a slow stream from a fake upstream is running: the
stream completes with [DONE], new connections are refused, the process exits cleanly; a stream that
outlasts `shutdown.grace_s` is cut and the process still exits."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, link_shared_models, relay_started_workers

STREAM = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


async def start_serve(
    tmp_path: Path, upstream_url: str, port: int, extra: str = "", workers: int = 1
) -> subprocess.Popen:
    """``driftgate serve`` once ``/readyz`` answers and granian says every worker started: a worker still
    starting when SIGTERM comes would open for new connections after the others stopped."""
    config = tmp_path / "driftgate.yaml"
    link_shared_models(tmp_path)
    config.write_text(
        f"port: {port}\nhome: {tmp_path}\nworkers: {workers}\n"
        f"models:\n  - name: m\n    backends: ['{upstream_url}']\n{extra}"
    )
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    started = relay_started_workers(process)
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(600):
            try:
                ready = (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
            except httpx.TransportError:
                ready = False
            if ready and len(started) == workers:
                return process
            assert process.poll() is None, "driftgate serve exited"
            await asyncio.sleep(0.1)
    process.kill()
    raise AssertionError("driftgate serve never became ready")


def streamed_text(body: bytes) -> str:
    events = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: {")]
    return "".join(json.loads(event)["choices"][0]["delta"].get("content") or "" for event in events)


async def exited(process: subprocess.Popen, within_s: float) -> int | None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return process.returncode
        await asyncio.sleep(0.05)
    return None


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_finishes_the_running_stream_then_exits(tmp_path: Path, upstreams, workers: int) -> None:
    upstream = await upstreams()
    upstream.behaviour.stream_gap_s = 0.3
    upstream.behaviour.stream_chunks = 8  # about 2 s of streaming
    port = free_port()
    process = await start_serve(tmp_path, upstream.url, port, workers=workers)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            async with client.stream("POST", "/v1/chat/completions", json=STREAM) as response:
                chunks = response.aiter_raw()
                received = [await chunks.__anext__()]
                process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.3)
                # A new connection is refused while the stream is still running.
                with pytest.raises(httpx.ConnectError):
                    async with httpx.AsyncClient(timeout=2) as newcomer:
                        await newcomer.get(f"http://127.0.0.1:{port}/healthz")
                assert process.poll() is None
                received += [chunk async for chunk in chunks]
        body = b"".join(received)
        assert response.status_code == 200
        assert body.endswith(b"data: [DONE]\n\n")
        assert streamed_text(body) == "".join(f"part{index} " for index in range(8))  # nothing lost, guards included
        assert upstream.observed.completed == 1 and upstream.observed.cancelled == 0
        assert await exited(process, 15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_a_stream_longer_than_the_grace_period_is_cut(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()
    upstream.behaviour.stream_gap_s = 1
    upstream.behaviour.stream_chunks = 60  # a minute: far beyond the grace period
    port = free_port()
    process = await start_serve(tmp_path, upstream.url, port, "shutdown:\n  grace_s: 2\n")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            async with client.stream("POST", "/v1/chat/completions", json=STREAM) as response:
                chunks = response.aiter_raw()
                await chunks.__anext__()
                signalled = time.monotonic()
                process.send_signal(signal.SIGTERM)
                with pytest.raises(httpx.HTTPError):
                    async for _ in chunks:
                        pass
        assert await exited(process, 10) is not None
        assert time.monotonic() - signalled < 8
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
