"""What the gateway writes to the request log: one record per request, redacted text only."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.config import ModelRoute
from guards import GuardsSettings
from monitor.request_log import RequestLogSettings
from monitor.request_log_store import RequestLogStore
from tests.conftest import running_gateway, settings_for

EMAIL = "jane.doe@example.com"


def logged(tmp_path: Path, *routes: ModelRoute, guards: GuardsSettings | None = None):
    config = RequestLogSettings(url=f"sqlite:///{tmp_path / 'log.db'}", max_delay_s=0.05)
    return settings_for(*routes, request_log=config, guards=guards or GuardsSettings())


async def test_each_request_is_logged_redacted_under_its_id(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()
    upstream.behaviour.answer = f"Write to {EMAIL}"
    async with running_gateway(logged(tmp_path, ModelRoute("m", [upstream.url]))) as client:
        plain = await client.post(
            "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": f"I am {EMAIL}"}]}
        )
        async with client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hello"}]},
        ) as streamed:
            async for _ in streamed.aiter_raw():
                pass
        missing = await client.post(
            "/v1/chat/completions", json={"model": "zz", "messages": [{"role": "user", "content": f"I am {EMAIL}"}]}
        )
    assert missing.status_code == 404
    # Leaving the gateway flushed the writer: everything is in the store now.
    store = RequestLogStore(f"sqlite:///{tmp_path / 'log.db'}")
    record = store.get(plain.headers["x-request-id"])
    assert record is not None and record.status == 200 and record.alias == "m"
    assert json.loads(record.prompt) == [{"role": "user", "content": "I am <EMAIL_1>"}]
    assert record.completion == "Write to <EMAIL_1>"
    assert record.backend == upstream.url and record.prompt_tokens == 5 and record.completion_tokens == 6
    assert {(d.guard, d.stage, d.entity, d.action) for d in record.guard_decisions} >= {
        ("pii", "input", "EMAIL", "redact"),
        ("pii", "output", "EMAIL", "redact"),
    }
    streamed_record = store.get(streamed.headers["x-request-id"])
    assert streamed_record.stream and streamed_record.ttft_ms is not None
    assert streamed_record.completion == "part0 part1 part2 "
    assert store.count() == 3
    # The 404 is logged too, without any text: the guards never saw it.
    (unrouted,) = [r for r in store.recent("unknown")]
    assert unrouted.status == 404 and unrouted.prompt is None
    everything = json.dumps([str(r) for r in store.recent("m")])
    assert EMAIL not in everything
    store.close()


async def test_without_guards_no_text_is_logged(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()
    async with running_gateway(
        logged(tmp_path, ModelRoute("m", [upstream.url]), guards=GuardsSettings(enabled=False))
    ) as client:
        response = await client.post(
            "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": f"I am {EMAIL}"}]}
        )
    store = RequestLogStore(f"sqlite:///{tmp_path / 'log.db'}")
    record = store.get(response.headers["x-request-id"])
    assert record.prompt is None and record.completion is None and record.status == 200
    store.close()


def test_request_ids_are_uuid7_and_ordered_by_time() -> None:
    import time
    import uuid

    from gateway.edge.observe import new_request_id

    earlier = [new_request_id() for _ in range(500)]
    time.sleep(0.002)
    later = new_request_id()
    assert len(set(earlier)) == 500
    parsed = uuid.UUID(later)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122 and len(later) == 32
    assert all(later > request_id for request_id in earlier)  # the log's key grows at its end
    assert abs(int(later[:12], 16) - time.time() * 1000) < 1000  # the first 48 bits are unix milliseconds
