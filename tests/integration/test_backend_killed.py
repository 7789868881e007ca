"""A backend process killed in the middle of a stream: that client gets a clean OpenAI-shaped error event,
and the other replica keeps serving everyone else (issue #9's fault test, against real processes)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.gateway import wait_http
from gateway.config import ModelRoute
from tests.conftest import free_port, running_gateway, settings_for

REPO = Path(__file__).resolve().parents[2]
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def replicas() -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    """Two mock vLLM processes whose streams last about 1.7 s (100 ms per event)."""
    started = []
    for _ in range(2):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.mock_upstream", "--port", str(port), "--chunk-delay-ms", "100"], cwd=REPO
        )
        started.append((f"http://127.0.0.1:{port}", process))
    for url, _ in started:
        wait_http(f"{url}/health", timeout_s=20)
    yield started
    for _, process in started:
        process.kill()
        process.wait()


async def test_killed_backend_mid_stream_ends_that_stream_cleanly_and_the_other_keeps_serving(replicas) -> None:
    settings = settings_for(ModelRoute(name="m", backends=[url for url, _ in replicas]), read_s=5.0)
    pids = {process.pid for _, process in replicas}
    async with running_gateway(settings) as client:
        events = []
        async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as reply:
            assert reply.status_code == 200
            async for line in reply.aiter_lines():
                if not line.startswith("data: "):
                    continue
                events.append(line[6:])
                if len(events) == 2:
                    serving = int(json.loads(events[0])["id"].removeprefix("chatcmpl-"))
                    assert serving in pids
                    os.kill(serving, signal.SIGKILL)
        error = json.loads(events[-1])
        assert set(error) == {"error"} and error["error"]["message"], events[-3:]
        assert {"message", "type", "param", "code"} <= set(error["error"])
        assert len(events) < 18, "the stream went on after its backend died"

        # Everyone else is served by the survivor, streamed or not, with no failed request.
        survivor = (pids - {serving}).pop()
        replies = await asyncio.gather(*(client.post("/v1/chat/completions", json=CHAT) for _ in range(10)))
        assert [r.status_code for r in replies] == [200] * 10
        async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as reply:
            lines = [line[6:] async for line in reply.aiter_lines() if line.startswith("data: ")]
        assert lines[-1] == "[DONE]" and json.loads(lines[0])["id"] == f"chatcmpl-{survivor}"
