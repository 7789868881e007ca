"""``/admin/keys`` through the real app: the first key closes the gateway, scopes hold, revocation is
immediate in the worker that made it, bad input changes nothing, and every change is in the audit trail."""

from __future__ import annotations

from pathlib import Path

from gateway.config import ModelRoute, state_url
from gateway.security.audit import AuditLog
from tests.conftest import running_gateway, settings_for


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_keys_are_created_listed_and_revoked_over_http(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()
    settings = settings_for(ModelRoute("m", [upstream.url]), home=str(tmp_path))
    async with running_gateway(settings) as client:
        # No key yet: the gateway is open (and bound to localhost); the first key is an admin's.
        first = await client.post("/admin/keys/", json={"name": "ops", "scope": "admin"})
        assert first.status_code == 201, first.text
        admin_id, admin = first.json()["key"]["id"], first.json()["token"]
        assert admin.startswith(f"dg_{admin_id}_")
        closed = await client.get("/admin/keys/")
        assert closed.status_code == 401  # at once, not after the cache's lifetime

        made = await client.post(
            "/admin/keys/",
            json={"name": "app", "adapters": ["m"], "rpm": 60, "expires_in_days": 30},
            headers=bearer(admin),
        )
        assert made.status_code == 201, made.text
        app_key, app = made.json()["key"], made.json()["token"]
        assert app_key["scope"] == "inference" and app_key["adapters"] == ["m"] and app_key["rpm"] == 60
        assert "token" not in str((await client.get("/admin/keys/", headers=bearer(admin))).json())
        listed = (await client.get("/admin/keys/", headers=bearer(admin))).json()["data"]
        assert [key["name"] for key in listed] == ["ops", "app"]

        assert (await client.get("/v1/models", headers=bearer(app))).status_code == 200
        as_app = await client.post("/admin/keys/", json={"name": "mine"}, headers=bearer(app))
        assert as_app.status_code == 403 and as_app.json()["error"]["type"] == "permission_error"

        revoked = await client.delete(f"/admin/keys/{app_key['id']}", headers=bearer(admin))
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert (await client.get("/v1/models", headers=bearer(app))).status_code == 401  # at once here
        again = await client.delete(f"/admin/keys/{app_key['id']}", headers=bearer(admin))
        assert again.status_code == 404 and again.json()["error"]["code"] == "key_not_found"

    trail = AuditLog(state_url(settings))
    changes = [(e.actor, e.action, e.subject) for e in trail.entries() if e.action.startswith("key.")]
    assert changes == [
        ("key:local", "key.created", f"key:{admin_id}"),
        (f"key:{admin_id}", "key.created", f"key:{app_key['id']}"),
        (f"key:{admin_id}", "key.revoked", f"key:{app_key['id']}"),
    ]
    assert not trail.verify()
    trail.close()


async def test_bad_key_requests_get_an_openai_error_and_change_nothing(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()
    settings = settings_for(ModelRoute("m", [upstream.url]), home=str(tmp_path))
    async with running_gateway(settings) as client:
        admin = (await client.post("/admin/keys/", json={"name": "ops", "scope": "admin"})).json()["token"]
        before = (await client.get("/admin/keys/", headers=bearer(admin))).json()
        bodies = [
            {},
            {"name": ""},
            {"name": "x", "scope": "root"},
            {"name": "x", "rpm": 0},
            {"name": "x", "adapters": []},
            {"name": "x", "expires_in_days": -1},
            {"name": "x", "token": "dg_chosen_by_me"},
        ]
        for body in bodies:
            reply = await client.post("/admin/keys/", json=body, headers=bearer(admin))
            assert reply.status_code == 400, (body, reply.text)
            assert reply.json()["error"]["type"] == "invalid_request_error" and reply.json()["error"]["message"]
        not_json = await client.post("/admin/keys/", content=b"{", headers=bearer(admin))
        assert not_json.status_code == 400
        assert (await client.delete("/admin/keys/nope", headers=bearer(admin))).status_code == 404
        assert (await client.get("/admin/keys/", headers=bearer(admin))).json() == before
