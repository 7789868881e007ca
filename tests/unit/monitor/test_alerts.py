"""The Alertmanager-format payload, and the sender against a real local HTTP server."""

from __future__ import annotations

import json

import msgspec
import pytest
from aiohttp import web

from monitor.alerts import AlertSender, alert_payload
from monitor.drift import DriftEvent, WindowResult
from tests.conftest import free_port


def event(transition: str = "fired") -> DriftEvent:
    window = WindowResult(
        alias="support", version="3", sequence=7, size=200, method="mmd", score=0.15, threshold=0.0065,
        clear_threshold=0.0045, over=True, opened_at=1_700_000_000, closed_at=1_700_000_600,
        novel_request_ids=["req-1", "req-2"],
    )  # fmt: skip
    return DriftEvent(
        transition=transition, alias="support", version="3", method="mmd", score=0.15, threshold=0.0065,
        windows=[window, window], request_ids=["req-1", "req-2"], at=1_700_000_600,
    )  # fmt: skip


def test_payload_follows_alertmanagers_webhook_format() -> None:
    body = json.loads(msgspec.json.encode(alert_payload(event(), external_url="http://gw:8000")))
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "driftgate"
    assert set(body) >= {"groupKey", "truncatedAlerts", "groupLabels", "commonLabels", "commonAnnotations"}
    (alert,) = body["alerts"]
    assert alert["labels"] == {"alertname": "EmbeddingDrift", "alias": "support", "version": "3", "severity": "warning"}
    notes = alert["annotations"]
    assert notes["score"] == "0.15" and notes["threshold"] == "0.0065" and notes["request_ids"] == "req-1,req-2"
    assert notes["window"].startswith("#7: 200 prompts, 2023-11-14T22:13:20Z")
    assert all(isinstance(value, str) for value in notes.values())
    assert alert["startsAt"] == "2023-11-14T22:23:20Z" and alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["generatorURL"] == "http://gw:8000/admin/drift" and len(alert["fingerprint"]) == 16


def test_a_resolved_payload_ends_the_same_alert() -> None:
    fired = alert_payload(event()).alerts[0]
    resolved = alert_payload(event("resolved"), started_at=1_699_999_000).alerts[0]
    assert resolved.status == "resolved" and resolved.fingerprint == fired.fingerprint
    assert resolved.ends_at == "2023-11-14T22:23:20Z" and resolved.starts_at == "2023-11-14T21:56:40Z"


@pytest.fixture
async def receiver():
    """A webhook receiver that fails the first ``fail`` requests with 503."""
    seen: list[dict] = []
    plan = {"fail": 0}

    async def handle(request: web.Request) -> web.Response:
        seen.append(await request.json())
        if len(seen) <= plan["fail"]:
            return web.Response(status=503)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/hook", seen, plan
    await runner.cleanup()


async def test_sender_posts_and_retries_until_the_receiver_accepts(receiver) -> None:
    url, seen, plan = receiver
    plan["fail"] = 2
    assert await AlertSender(url, backoff_s=0.01).send(alert_payload(event())) is True
    assert len(seen) == 3 and seen[-1]["alerts"][0]["labels"]["alertname"] == "EmbeddingDrift"


async def test_sender_gives_up_quietly(receiver) -> None:
    url, seen, plan = receiver
    plan["fail"] = 99
    assert await AlertSender(url, attempts=3, backoff_s=0.01).send(alert_payload(event())) is False
    assert len(seen) == 3
    closed = f"http://127.0.0.1:{free_port()}/hook"
    assert await AlertSender(closed, attempts=2, backoff_s=0.01).send(alert_payload(event())) is False
