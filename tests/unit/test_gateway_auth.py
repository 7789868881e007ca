"""Keys in the request path: scopes, tenant isolation, limits, and what lands in the audit trail."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.config import ModelRoute, state_url
from gateway.security.audit import AuditLog
from gateway.security.keys import KeyStore
from guards import GuardsSettings
from tests.conftest import running_gateway, settings_for

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_scopes_tenants_and_limits(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()
    routes = [ModelRoute("m", [upstream.url]), ModelRoute("other", [upstream.url])]
    settings = settings_for(*routes, home=str(tmp_path))
    keys = KeyStore(state_url(settings))
    _, app = keys.create("app", "inference")
    _, admin = keys.create("ops", "admin")
    tenant_key, tenant = keys.create("tenant-b", "inference", adapters=["other"])
    _, small = keys.create("small", "inference", rpm=2)
    async with running_gateway(settings) as client:
        anonymous = await client.post("/v1/chat/completions", json=CHAT)
        wrong = await client.post("/v1/chat/completions", json=CHAT, headers=bearer("dg_abc_nope"))
        allowed = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(app))
        drift_as_app = await client.get("/admin/drift", headers=bearer(app))
        adapters_as_app = await client.get("/admin/adapters/", headers=bearer(app))
        drift_as_admin = await client.get("/admin/drift", headers=bearer(admin))
        hidden = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(tenant))
        own = await client.post("/v1/chat/completions", json={**CHAT, "model": "other"}, headers=bearer(tenant))
        listing = (await client.get("/v1/models", headers=bearer(tenant))).json()
        limited = [(await client.post("/v1/chat/completions", json=CHAT, headers=bearer(small))) for _ in range(3)]
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "invalid_api_key"
    assert wrong.status_code == 401
    assert allowed.status_code == 200
    assert drift_as_app.status_code == 403 and adapters_as_app.status_code in (403, 404)
    assert drift_as_app.json()["error"]["type"] == "permission_error"
    assert drift_as_admin.status_code == 200
    # Another tenant's model answers exactly like a model that does not exist.
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "model_not_found"
    assert own.status_code == 200
    assert [card["id"] for card in listing["data"]] == ["other"]
    assert [r.status_code for r in limited] == [200, 200, 429]
    assert int(limited[2].headers["retry-after"]) >= 1
    assert tenant_key.id not in hidden.text
    keys.close()


async def test_guard_blocks_are_audited_without_the_text(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()
    settings = settings_for(ModelRoute("m", [upstream.url]), home=str(tmp_path), guards=GuardsSettings())
    toxic = "You are a worthless idiot and I hate you, you stupid moron"
    async with running_gateway(settings) as client:
        blocked = await client.post(
            "/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": toxic}]}
        )
        await asyncio.sleep(0.3)  # the audit append runs in a thread
    assert blocked.status_code == 400
    audit = AuditLog(state_url(settings))
    (entry,) = audit.entries()
    assert entry.action == "guard.blocked" and entry.details == {"stage": "input", "why": ["toxic"]}
    assert "moron" not in str(entry) and audit.verify() == []
    audit.close()
