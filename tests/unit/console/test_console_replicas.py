"""Two gateway replicas that share one PostgreSQL state database and nothing else (each its own home), as the
Helm chart runs them behind one Service: a console login, its CSRF tokens and its logout hold on both, with
no sticky sessions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest_asyncio

from gateway.config import AdaptersSettings, ModelRoute
from gateway.console.settings import ConsoleSettings
from gateway.security.keys import KeyStore
from tests.conftest import free_port, running_gateway, settings_for
from tests.fake_upstream import FakeUpstream
from tests.unit.console.conftest import Console, auth, browser, csrf_of, log_in


@pytest_asyncio.fixture
async def replicas(pg_cluster, tmp_path, upstreams) -> AsyncIterator[tuple[Console, Console]]:
    upstream: FakeUpstream = await upstreams()
    url = pg_cluster.create_database(f"test_{uuid.uuid4().hex[:12]}")
    store = KeyStore(url)
    _, admin = store.create("operator", "admin")
    _, inference = store.create("app", "inference")
    store.close()
    async with AsyncExitStack() as stack:
        started = []
        for name in ("a", "b"):
            home = tmp_path / name
            home.mkdir()
            port = free_port()
            settings = settings_for(
                ModelRoute("m", [upstream.url]),
                home=str(home),
                port=port,
                adapters=AdaptersSettings(url=url, poll_s=0.1, reconcile_s=0.2),
                console=ConsoleSettings(),  # Secure cookies, as deployed
            )
            client = await stack.enter_async_context(running_gateway(settings, port=port))
            client.headers.update(auth(admin))
            started.append(Console(client, f"http://127.0.0.1:{port}", admin, inference, home, url))
        yield started[0], started[1]


async def test_a_login_its_forms_and_its_logout_hold_on_every_replica(replicas: tuple[Console, Console]) -> None:
    a, b = replicas
    # One browser, one origin (the Service's): its requests land on either replica.
    async with browser(a) as client:
        assert (await client.get(f"{b.url}/console")).status_code == 303  # not logged in anywhere yet
        assert (await log_in(client, a.admin)).status_code == 303  # on A
        page = await client.get(f"{b.url}/console/keys")
        assert page.status_code == 200 and "operator" in page.text  # the session works on B

        # A form served by A, posted to B: B accepts A's CSRF token, and the key is revoked.
        token = csrf_of((await client.get(f"{a.url}/console/keys")).text)
        key_id = a.inference.split("_")[1]
        revoked = await client.post(f"{b.url}/console/keys/{key_id}/revoke", data={"_csrf_token": token})
        assert revoked.status_code == 303 and revoked.headers["location"] == "/console/keys"
        keys = {key["id"]: key for key in (await a.client.get("/admin/keys/")).json()["data"]}
        assert keys[key_id]["revoked_at"] is not None
        assert f"Key {key_id} revoked." in (await client.get(f"{a.url}/console/keys")).text  # B's flash, on A
        forged = await client.post(f"{b.url}/console/logout", data={"_csrf_token": token[:-4] + "0000"})
        assert forged.status_code == 403

        # Logging in again on B rotates the id: the session A knew is gone from both.
        old_id = client.cookies.get("driftgate_console")
        assert (await log_in(client, b.admin, b.url)).status_code == 303
        new_id = client.cookies.get("driftgate_console")
        assert new_id != old_id
        async with browser(a) as stale:
            stale.cookies.set("driftgate_console", old_id)
            assert (await stale.get("/console")).status_code == 303

        # Logout on B ends the session on A.
        out = await client.post(f"{b.url}/console/logout", data={"_csrf_token": token})
        assert out.status_code == 303
        assert (await client.get(f"{a.url}/console")).status_code == 303
        async with browser(a) as replay:  # the id itself is dead, not only the cookie
            replay.cookies.set("driftgate_console", new_id)
            assert (await replay.get("/console")).status_code == 303
