"""Handlers get the worker's parts by dependency injection: none reads the app's state, and a part this
config leaves off is refused by its provider with the catalog's 404 (behind the key check of admin routes)."""

from __future__ import annotations

from pathlib import Path

from gateway.config import ModelRoute, state_url
from gateway.security.keys import KeyStore
from tests.conftest import running_gateway, settings_for

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
COMPOSITION = {GATEWAY / "providers.py", GATEWAY / "app.py"}


def test_only_the_composition_root_reads_the_gateway_from_the_app_state() -> None:
    readers = [
        str(path.relative_to(GATEWAY.parent))
        for path in sorted(GATEWAY.rglob("*.py"))
        if path not in COMPOSITION and "state.gateway" in path.read_text()
    ]
    assert not readers, f"declare a dependency (gateway/providers.py) instead: {readers}"


async def test_parts_that_are_off_answer_feature_not_configured(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()
    settings = settings_for(ModelRoute("m", [upstream.url]), home=str(tmp_path))  # no adapters, loop, log
    keys = KeyStore(state_url(settings))
    _, admin = keys.create("ops", "admin")
    _, inference = keys.create("app", "inference")
    keys.close()
    as_admin = {"authorization": f"Bearer {admin}"}
    async with running_gateway(settings) as client:
        for method, path in (("GET", "/admin/adapters"), ("GET", "/admin/loop"), ("POST", "/admin/alerts")):
            # The admin guard runs first: without an admin key the answer does not say what is configured.
            assert (await client.request(method, path, json={"alerts": []})).status_code == 401
            denied = await client.request(method, path, headers={"authorization": f"Bearer {inference}"})
            assert denied.status_code == 403
            off = await client.request(method, path, json={"alerts": []}, headers=as_admin)
            assert off.status_code == 404 and off.json()["error"]["code"] == "feature_not_configured", off.text
        feedback = await client.post("/v1/feedback", json={"request_id": "x", "rating": 1}, headers=as_admin)
        assert feedback.status_code == 404 and feedback.json()["error"]["code"] == "feature_not_configured"
        assert "request log" in feedback.json()["error"]["message"]
        # A part that is optional by nature is handed over as None: drift off is an empty report.
        drift = await client.get("/admin/drift", headers=as_admin)
        assert drift.status_code == 200 and drift.json() == {"aliases": [], "events": [], "dropped": 0}
        assert (await client.get("/readyz")).status_code == 200
        models = await client.get("/v1/models", headers=as_admin)
        assert [card["id"] for card in models.json()["data"]] == ["m"]
