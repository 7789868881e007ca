"""`driftgate status`, `drift report` and `loop list|show|approve` against one gateway with keys enforced.

The gateway is real (on a socket, over the fake upstream) with adapters, the request log, drift of adapter
aliases (the real ONNX embedder, small windows), guards that block e-mail addresses, and the closed loop in
manual mode (its training job replaced by the loop tests' stand-in). The CLI reads the same YAML file the
gateway was built from, so it finds the gateway's URL, home and request log as an operator's would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import yaml
from typer.testing import CliRunner, Result

from gateway.cli import app
from gateway.config import DriftWatchSettings, HealthCheckSettings, state_url
from gateway.loop.policy import LoopPolicy, LoopSettings
from gateway.security.keys import KeyStore
from guards import GuardsSettings, PiiSettings, StageSettings, ToxicitySettings
from monitor.drift_types import DriftSettings
from monitor.request_log import RequestLogSettings
from tests.conftest import free_port, running_gateway
from tests.unit.adapters.conftest import BASE, adapter_settings, write_adapter
from tests.unit.loop.test_loop_gateway import StandInJobs, alert
from tests.unit.monitor.conftest import MODEL_DIR
from tests.unit.test_admin_client import one_line_error

SAMPLE = Path(__file__).resolve().parents[2] / "training" / "data" / "samples" / "support.jsonl"
NO_TOXICITY = ToxicitySettings(enabled=False)
WINDOW = 8


@dataclass
class Operated:
    client: httpx.AsyncClient  # carries the admin key
    config: Path
    admin: str
    inference: str

    async def driftgate(self, *args: str, key: str | None = None) -> Result:
        env = {"DRIFTGATE_API_KEY": key, "DRIFTGATE_CONFIG": str(self.config), "COLUMNS": "200"}
        return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


@asynccontextmanager
async def operated_gateway(tmp_path: Path, upstreams) -> AsyncIterator[Operated]:
    upstream = await upstreams(BASE)
    port = free_port()
    settings = adapter_settings(
        tmp_path,
        upstream.url,
        port=port,
        request_log=RequestLogSettings(url=f"sqlite:///{tmp_path / 'log.db'}", max_delay_s=0.02),
        guards=GuardsSettings(
            input=StageSettings(pii=PiiSettings(actions={"EMAIL": "block"}), toxicity=NO_TOXICITY),
            output=StageSettings(toxicity=NO_TOXICITY),
        ),
        drift=DriftWatchSettings(
            adapters=True,
            embedder_dir=str(MODEL_DIR),
            detection=DriftSettings(window_size=WINDOW, min_window_size=WINDOW),
        ),
        loop=LoopSettings(default=LoopPolicy(approval="manual", min_new_samples=0, cooldown_s=0), tick_s=0.05),
    )
    # A patient health check: the embedder's first load competes for the CPU with the fake upstream.
    settings = msgspec.structs.replace(settings, health=HealthCheckSettings(interval_s=0.2, timeout_s=5.0))
    config = tmp_path / "driftgate.yaml"
    config.write_text(yaml.safe_dump(msgspec.to_builtins(settings)))
    store = KeyStore(state_url(settings))
    _, admin = store.create("ops", "admin")
    _, inference = store.create("app", "inference")
    store.close()
    async with running_gateway(settings, port=port) as client:
        jobs = StandInJobs()
        jobs.workspace = tmp_path
        client.app.state.gateway.loop.jobs = jobs
        client.headers["authorization"] = f"Bearer {admin}"
        yield Operated(client, config, admin, inference)


async def serve_alias(operated: Operated, tmp_path: Path) -> None:
    """support@1 in production (registered with the sample dataset: its drift reference), support@2 on canary."""
    client = operated.client
    for number, name in ((1, "one"), (2, "two")):
        body = {"alias": "support", "weights": write_adapter(tmp_path / name), "base_model": BASE}
        if number == 1:
            body["dataset"] = str(SAMPLE)
        assert (await client.post("/admin/adapters/", json=body)).status_code == 201
    assert (await client.post("/admin/adapters/support/promote", json={"version": 1})).status_code == 200


async def chat(client: httpx.AsyncClient, text: str, model: str = "support", user: str = "u") -> httpx.Response:
    body = {"model": model, "user": user, "messages": [{"role": "user", "content": text}]}
    return await client.post("/v1/chat/completions", json=body)


async def test_status_shows_versions_backends_aliases_loop_and_traffic(tmp_path: Path, upstreams) -> None:
    async with operated_gateway(tmp_path, upstreams) as operated:
        client = operated.client
        await serve_alias(operated, tmp_path)
        assert (
            await client.post("/admin/adapters/support/canary", json={"version": 2, "share": 0.25})
        ).status_code == 200
        for _ in range(3):
            assert (await chat(client, "Hello?", model=BASE)).status_code == 200
        assert (await chat(client, "Mail me at someone@example.com", model=BASE)).status_code == 400
        run = (await client.post("/admin/alerts", json=alert("support"))).json()["runs"][0]
        assert run["status"] == "awaiting_approval", run

        async def steady_traffic() -> None:
            while True:
                await chat(client, "Hello again?", model=BASE)
                await asyncio.sleep(0.02)

        traffic = asyncio.create_task(steady_traffic())
        try:
            as_json = await operated.driftgate("status", "--json", "--sample-s", "0.5", key=operated.admin)
        finally:
            traffic.cancel()
        assert as_json.exit_code == 0, as_json.output
        found = json.loads(as_json.stdout)
        assert found["ready"] is True and found["version"] and found["url"] == str(client.base_url)
        (model,) = [m for m in found["models"] if m["name"] == BASE]
        # (Metrics are per process: earlier tests' gateways in this one left their backends' gauges too.)
        backends = {b["url"]: (b["up"], b["circuit_open"]) for b in model["backends"]}
        assert backends[upstream_url(operated)] == (True, False)
        (alias,) = found["adapters"]
        assert (alias["production"], alias["canary"], alias["canary_share"]) == ("support@1", "support@2", 0.25)
        (drift,) = found["drift"]
        assert drift["alias"] == "support" and drift["version"] == "support@1" and drift["status"] == "collecting"
        assert [r["id"] for r in found["loop_runs"]] == [run["id"]]
        assert found["traffic"]["requests_total"] >= 5 and found["traffic"]["requests_per_s"] > 0
        assert found["traffic"]["guard_blocks"]["input"] >= 1 and found["traffic"]["client_errors_total"] >= 1
        assert found["notes"] == []

        shown = await operated.driftgate("status", "--sample-s", "0", key=operated.admin)
        assert shown.exit_code == 0, shown.output
        for fragment in ("ready", "support@2 at 25%", "collecting", run["id"], "guard blocks: input"):
            assert fragment in shown.output, (fragment, shown.output)

        assert one_line_error(await operated.driftgate("status"), 1).startswith("error: 401 ")
        assert one_line_error(await operated.driftgate("status", key=operated.inference), 1).startswith("error: 403 ")


def upstream_url(operated: Operated) -> str:
    return operated.client.app.state.gateway.settings.models[0].backends[0].rstrip("/")


async def test_loop_list_show_and_approve(tmp_path: Path, upstreams) -> None:
    async with operated_gateway(tmp_path, upstreams) as operated:
        await serve_alias(operated, tmp_path)
        run = (await operated.client.post("/admin/alerts", json=alert("support"))).json()["runs"][0]
        listed = await operated.driftgate("loop", "list", key=operated.admin)
        assert listed.exit_code == 0 and run["id"] in listed.output and "awaiting_approval" in listed.output
        shown = await operated.driftgate("loop", "show", run["id"], key=operated.admin)
        assert shown.exit_code == 0 and "decision" in shown.output, shown.output
        approved = await operated.driftgate("loop", "approve", run["id"], key=operated.admin)
        assert approved.exit_code == 0 and f"{run['id']} (support): queued" in approved.output, approved.output
        again = one_line_error(await operated.driftgate("loop", "approve", run["id"], key=operated.admin), 1)
        assert again.startswith("error: 409 ") and "not awaiting approval" in again
        assert one_line_error(await operated.driftgate("loop", "show", "no-such-run", key=operated.admin), 1)
        assert one_line_error(await operated.driftgate("loop", "list"), 1).startswith("error: 401 ")


async def test_drift_report_of_an_alias_gives_a_verdict_against_its_registered_reference(
    tmp_path: Path, upstreams
) -> None:
    async with operated_gateway(tmp_path, upstreams) as operated:
        await serve_alias(operated, tmp_path)
        prompts = [json.loads(line)["prompt"] for line in SAMPLE.read_text().splitlines()]
        # On-topic traffic without e-mail addresses (the input guard blocks those).
        on_topic = [p for p in prompts if "@" not in p][: WINDOW + 2]
        for index, prompt in enumerate(on_topic):
            assert (await chat(operated.client, prompt, user=f"user-{index}")).status_code == 200
        for _ in range(100):  # the window is judged off the request path
            state = (await operated.client.get("/admin/drift")).json()["aliases"][0]
            if state["status"] != "collecting":
                break
            await asyncio.sleep(0.1)
        assert state["status"] == "ok", state

        out = tmp_path / "report.html"
        report = await operated.driftgate(
            "drift", "report", "--model", "support", "--out", str(out), key=operated.admin
        )
        assert report.exit_code == 0, report.output
        assert "no reference" not in report.output
        assert "verdict for support (support@1): no drift" in report.output, report.output
        assert f"{len(on_topic)} recent prompts against" in report.output
        assert out.stat().st_size > 10_000

        missing = one_line_error(await operated.driftgate("drift", "report", "--model", "nope", key=operated.admin), 1)
        assert "neither in drift.references nor an adapter alias" in missing
        assert one_line_error(await operated.driftgate("drift", "report"), 1).startswith("error: 401 ")


def test_status_without_metrics_keeps_the_rest_and_says_why() -> None:
    """A gateway whose /metrics wants a scrape token the admin key is not: one note, the other sections intact."""
    from gateway.admin_client import AdminClient
    from gateway.status_cli import gather

    scraped_with: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/metrics":
            scraped_with.append(request.headers["authorization"])
            return httpx.Response(401, json={"error": {"message": "Bad scrape token.", "type": "authentication_error"}})
        documents = {
            "/admin/adapters/": {"revision": 1, "aliases": []},
            "/admin/drift": {"aliases": [], "events": [], "dropped": 0},
            "/readyz": {"status": "not_ready", "unavailable_models": ["m"]},
            "/openapi.json": {"info": {"version": "9.9.9"}},
        }
        if path in documents:
            return httpx.Response(503 if path == "/readyz" else 200, json=documents[path])
        return httpx.Response(
            404, json={"error": {"message": "The closed loop is off.", "type": "invalid_request_error"}}
        )

    client = AdminClient("http://gw", "dg_admin", transport=httpx.MockTransport(answer))
    found = gather(client, metrics_token="scrape-secret", sample_s=0.0)
    assert scraped_with == ["Bearer scrape-secret"]
    assert (found.version, found.ready, found.unavailable_models) == ("9.9.9", False, ["m"])
    assert found.adapters == [] and found.loop_runs is None and found.models == [] and found.traffic is None
    (note,) = found.notes
    assert note.startswith("metrics refused (401 authentication_error: Bad scrape token.)")
