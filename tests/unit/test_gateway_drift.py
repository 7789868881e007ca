"""Drift through the gateway: real embeddings of real prompts, windows, an Alertmanager-format webhook."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import msgspec
from aiohttp import web

from demo.corpora import prompts
from gateway.config import DriftWatchSettings, ModelRoute
from guards import GuardsSettings
from monitor.drift_types import DriftSettings
from monitor.request_log import RequestLogSettings
from tests.conftest import free_port, running_gateway, settings_for
from tests.unit.monitor.conftest import MODEL_DIR


async def alert_receiver(received: list[dict]) -> tuple[web.AppRunner, str]:
    async def receive(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/alerts", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/alerts"


async def test_a_topic_shift_is_confirmed_and_alerted(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()
    reference = tmp_path / "support.txt"
    reference.write_text("\n".join(prompts("support", 400, seed=7)))
    received: list[dict] = []
    runner, alert_url = await alert_receiver(received)
    drift = DriftWatchSettings(
        references={"m": str(reference)},
        detection=DriftSettings(window_size=60, min_window_size=50, confirm_windows=2, clear_windows=2),
        embedder_dir=str(MODEL_DIR),
        alert_url=alert_url,
    )
    port = free_port()
    settings = settings_for(
        ModelRoute("m", [upstream.url]),
        drift=drift,
        home=str(tmp_path / "home"),
        port=port,
        guards=GuardsSettings(),
        request_log=RequestLogSettings(url=f"sqlite:///{tmp_path / 'log.db'}", max_delay_s=0.05),
    )

    async def send(client, texts: list[str]) -> None:
        for text in texts:
            response = await client.post(
                "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": text}]}
            )
            assert response.status_code == 200

    try:
        async with running_gateway(settings, port=port) as client:
            await send(client, prompts("support", 120, seed=8))  # same topic as the reference: two windows
            for _ in range(150):  # both windows scored (the embedder works off the request path: wait for it)
                calm = (await client.get("/admin/drift")).json()
                if calm["aliases"] and calm["aliases"][0]["windows_checked"] >= 2:
                    break
                await asyncio.sleep(0.2)
            await send(client, prompts("cooking", 120, seed=9))  # a new topic: two windows over the threshold
            for _ in range(100):
                shifted = (await client.get("/admin/drift")).json()
                if shifted["events"]:
                    break
                await asyncio.sleep(0.2)
            metrics = (await client.get("/metrics")).text
            # What an operator runs: the live state from this gateway, and the HTML report from the request log.
            config = tmp_path / "driftgate.yaml"
            config.write_bytes(msgspec.json.encode(settings))
            report = tmp_path / "report.html"
            cli = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "drift", "report", "-c", str(config), "--model", "m",
                "--out", str(report), "--limit", "100", stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, cli_output = await cli.communicate()
    finally:
        await runner.cleanup()

    (calm_alias,) = calm["aliases"]
    assert calm_alias["alias"] == "m" and calm_alias["status"] == "ok" and calm_alias["windows_checked"] == 2
    (alias,) = shifted["aliases"]
    assert alias["status"] == "drifting" and alias["windows_checked"] == 4
    (event,) = shifted["events"]
    assert event["transition"] == "fired" and event["score"] > event["threshold"]
    assert 'driftgate_drift_confirmed{alias="m"} 1.0' in metrics
    for _ in range(50):
        if received:
            break
        await asyncio.sleep(0.1)
    (payload,) = received
    assert payload["version"] == "4" and payload["status"] == "firing"
    (alert,) = payload["alerts"]
    assert alert["labels"]["alertname"] == "EmbeddingDrift" and alert["labels"]["alias"] == "m"
    drifted_ids = alert["annotations"]["request_ids"].split(",")
    assert drifted_ids and all(len(request_id) == 32 for request_id in drifted_ids)
    assert json.dumps(payload).count("cooking") == 0  # ids and scores only, never prompt text
    shown = " ".join(cli_output.decode().split())
    assert cli.returncode == 0, shown
    assert "drifting" in shown and "fired: m" in shown
    assert report.stat().st_size > 10_000 and "<html" in report.read_text()[:2000].lower()
