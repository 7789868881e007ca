"""A real `driftgate serve --workers 2` over a fake upstream, with drift watched on one model and the state in a
SQLite file, then on the real PostgreSQL server: the two workers fill the same windows (each sees about half
the prompts), the clean traffic raises no alarm, the topic shift is confirmed within seconds of the last
prompt, and every worker answers ``/admin/drift`` with the same state."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from demo.corpora import prompts
from tests.conftest import free_port, link_shared_models
from tests.unit.test_cli_serve import serve_process

WINDOW = 30
# One connection per request, so the requests spread over both workers.
CLOSE = {"connection": "close"}


def fleet_config(tmp_path: Path, upstream_url: str, db_url: str) -> Path:
    reference = tmp_path / "support.txt"
    reference.write_text("\n".join(prompts("support", 200, seed=7)))
    link_shared_models(tmp_path)
    config = tmp_path / "driftgate.yaml"
    config.write_text(
        f"port: 1\nworkers: 2\nhome: {tmp_path}\nadapters:\n  url: '{db_url}'\n"
        f"models:\n  - name: m\n    backends: ['{upstream_url}']\n"
        f"drift:\n  refresh_s: 0.5\n  references:\n    m: {reference}\n"
        f"  detection:\n    window_size: {WINDOW}\n    min_window_size: {WINDOW}\n    confirm_windows: 2\n"
        # Above the null of 30-prompt windows (as in the e2e tests); a change of topic scores far higher.
        "    method: {name: mmd, threshold: 0.03, clear_threshold: 0.02}\n"
    )
    return config


async def send(client: httpx.AsyncClient, texts: list[str]) -> None:
    for start in range(0, len(texts), 10):
        chats = [{"model": "m", "messages": [{"role": "user", "content": text}]} for text in texts[start : start + 10]]
        answers = await asyncio.gather(*(client.post("/v1/chat/completions", json=c, headers=CLOSE) for c in chats))
        assert [a.status_code for a in answers] == [200] * len(chats), [a.text for a in answers]


async def views(client: httpx.AsyncClient, count: int = 8) -> list[dict]:
    """``/admin/drift``'s state of ``m`` as several requests (on new connections, so both workers) see it."""
    answers = await asyncio.gather(*(client.get("/admin/drift", headers=CLOSE) for _ in range(count)))
    return [next(a for a in answer.json()["aliases"] if a["alias"] == "m") for answer in answers]


async def settled(client: httpx.AsyncClient, done, timeout_s: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = await views(client)
        if all(done(state) for state in seen):
            return seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"not settled in {timeout_s} s: {seen}")


async def test_two_workers_share_windows_and_report_the_same_drift(tmp_path: Path, upstreams, db_url: str) -> None:
    upstream = await upstreams()
    async with serve_process(fleet_config(tmp_path, upstream.url, db_url), free_port()) as client:
        # A window and a half: split between two workers' own windows, neither would have closed one.
        await send(client, prompts("support", 3 * WINDOW // 2, seed=3))
        seen = await settled(client, lambda s: (s["windows_checked"], s["pending"]) == (1, WINDOW // 2))
        assert {s["status"] for s in seen} == {"ok"}, seen

        await send(client, prompts("travel", 5 * WINDOW // 2, seed=3))
        last_prompt = time.monotonic()
        seen = await settled(client, lambda s: s["status"] == "drifting" and s["windows_checked"] == 4, timeout_s=5.0)
        confirmed_after_s = time.monotonic() - last_prompt
        assert {(s["windows_checked"], s["drifting_since"]) for s in seen} == {(4, seen[0]["drifting_since"])}
        events = (await client.get("/admin/drift")).json()["events"]
        assert [e["transition"] for e in events] == ["fired"], events
    print(f"drift confirmed {confirmed_after_s:.2f} s after the last prompt")
