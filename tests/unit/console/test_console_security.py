"""The console's security model over HTTP: login with an admin key only, a server-side session in a locked-down
cookie, CSRF on every action, revocation ending sessions, redaction and escaping of prompt text."""

from __future__ import annotations

import asyncio
import re

import pytest
import sqlalchemy as sa

from demo.corpora import prompts
from gateway.console.database_store import store_entries
from gateway.console.routes import REPORT_POLICY
from gateway.security.audit import AuditLog
from monitor.database import create_engine
from tests.unit.console.conftest import Console, browser, chat, csrf_of, log_in, register_versions

PAGES = ["/console", "/console/adapters", "/console/drift", "/console/loop", "/console/guards", "/console/keys"]


pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_every_page_needs_a_login(console: Console) -> None:
    async with browser(console) as client:
        for page in PAGES + ["/console/loop/some-run", "/console/overview/stats"]:
            response = await client.get(page)
            assert response.status_code == 303 and response.headers["location"] == "/console/login", page
        # An admin key as a bearer header is not a console login either: the console is cookie-only.
        response = await client.get("/console/keys", headers={"authorization": f"Bearer {console.admin}"})
        assert response.status_code == 303
        # The overview's htmx refresh is sent to the login page as a whole page, not into its panel.
        refresh = await client.get("/console/overview/stats", headers={"hx-request": "true"})
        assert refresh.status_code == 200 and refresh.headers["hx-redirect"] == "/console/login"
        # A forged session cookie is no session.
        client.cookies.set("driftgate_console", "0" * 64)
        assert (await client.get("/console")).status_code == 303


async def test_login_takes_an_admin_key_only_and_sets_a_locked_down_cookie(console: Console) -> None:
    async with browser(console) as client:
        wrong = await log_in(client, "dg_000000000000_" + "x" * 43)
        assert wrong.status_code == 401 and "not a usable API key" in wrong.text
        inference = await log_in(client, console.inference)
        assert inference.status_code == 403 and "inference scope" in inference.text
        assert "driftgate_console=" not in inference.headers.get("set-cookie", "").replace("=null", "")
        before = client.cookies.get("driftgate_console")
        admin = await log_in(client, console.admin)
        assert admin.status_code == 303 and admin.headers["location"] == "/console"
        cookies = admin.headers.get_list("set-cookie")
        session = next(cookie for cookie in cookies if cookie.startswith("driftgate_console="))
        assert re.search(r"; HttpOnly", session) and re.search(r"; Secure", session)
        assert re.search(r"SameSite=strict", session, re.I) and "Path=/console" in session
        session_id = session.split(";")[0].split("=", 1)[1]
        assert session_id != before and len(session_id) == 64
        # The key is nowhere in what the browser gets back: not in cookies, not in the page.
        assert console.admin not in " ".join(cookies)
        # The session lives on the server, in the state database, holding the key's id and never the key.
        engine = create_engine(console.state_url)
        with engine.connect() as conn:
            stored = dict(conn.execute(sa.select(store_entries.c.key, store_entries.c.value)).all())
        engine.dispose()
        assert session_id in stored and before not in stored
        assert all(console.admin.encode() not in value for value in stored.values())


async def test_pages_render_for_an_admin_and_csrf_guards_every_action(console: Console) -> None:
    async with browser(console) as client:
        await register_versions(console, "helpdesk", count=3)
        assert (await log_in(client, console.admin)).status_code == 303
        for page in PAGES:
            response = await client.get(page)
            assert response.status_code == 200, page
            assert "script-src 'self'" in response.headers["content-security-policy"]
            assert response.headers["cache-control"] == "no-store"
        page = await client.get("/console/adapters")
        token = csrf_of(page.text)
        action = "/console/adapters/helpdesk/promote"
        missing = await client.post(action, data={"version": "2"})
        forged = await client.post(action, data={"version": "2", "_csrf_token": token[:-4] + "0000"})
        assert missing.status_code == 403 and forged.status_code == 403
        listing = (await console.client.get("/admin/adapters/helpdesk")).json()
        assert listing["production"] == "helpdesk@1"  # the refused posts changed nothing
        done = await client.post(action, data={"version": "2", "_csrf_token": token})
        assert done.status_code == 303
        assert (await console.client.get("/admin/adapters/helpdesk")).json()["production"] == "helpdesk@2"
        assert "helpdesk@2 promoted" in (await client.get("/console/adapters")).text
        # Canary and rollback: the same service moves as the admin API's.
        canary = await client.post(
            "/console/adapters/helpdesk/canary", data={"version": "3", "share": "0.3", "_csrf_token": token}
        )
        assert canary.status_code == 303
        view = (await console.client.get("/admin/adapters/helpdesk")).json()
        assert view["canary"] == "helpdesk@3" and view["canary_share"] == 0.3
        bad = await client.post(
            "/console/adapters/helpdesk/canary", data={"version": "3", "share": "2", "_csrf_token": token}
        )
        assert bad.status_code == 303 and "between 0 and 1" in (await client.get("/console/adapters")).text
        for expected in ({"canary": None, "production": "helpdesk@2"}, {"canary": None, "production": "helpdesk@1"}):
            # The first rollback ends the canary, the second returns production to the version before.
            rollback = await client.post("/console/adapters/helpdesk/rollback", data={"_csrf_token": token})
            assert rollback.status_code == 303
            view = (await console.client.get("/admin/adapters/helpdesk")).json()
            assert {"canary": view["canary"], "production": view["production"]} == expected
        # Audited under the logged-in key, with the admin API's action name.
        audit = AuditLog(console.state_url)
        for _ in range(50):  # appended off the event loop, after the answer
            entries = [entry for entry in audit.entries() if entry.action == "adapter.promoted"]
            if entries and entries[-1].subject == "helpdesk@2":
                break
            await asyncio.sleep(0.05)
        audit.close()
        assert entries[-1].subject == "helpdesk@2" and entries[-1].actor.startswith("key:")
        assert entries[-1].actor != "key:local"
        # Logging out needs the token too, and then the session is gone.
        assert (await client.post("/console/logout")).status_code == 403
        out = await client.post("/console/logout", data={"_csrf_token": token})
        assert out.status_code == 303 and (await client.get("/console")).status_code == 303


async def test_a_revoked_key_ends_its_sessions_and_keys_are_shown_once(console: Console) -> None:
    async with browser(console) as client:
        assert (await log_in(client, console.admin)).status_code == 303
        token = csrf_of((await client.get("/console/keys")).text)
        created = await client.post(
            "/console/keys", data={"name": "second-admin", "scope": "admin", "_csrf_token": token}
        )
        new_token = re.search(r'id="new-token">([^<]+)<', created.text).group(1)
        assert (await client.get("/console/keys")).text.count(new_token) == 0  # shown once
        async with browser(console) as other:
            assert (await log_in(other, new_token)).status_code == 303
            key_id = new_token.split("_")[1]
            revoked = await client.post(f"/console/keys/{key_id}/revoke", data={"_csrf_token": token})
            assert revoked.status_code == 303
            assert (await other.get("/console")).status_code == 303  # its session ended with the key
        keys = {key["id"]: key for key in (await console.client.get("/admin/keys/")).json()["data"]}
        assert keys[key_id]["revoked_at"] is not None and keys[key_id]["name"] == "second-admin"


async def test_blocked_requests_are_listed_without_their_text(console: Console) -> None:
    async with browser(console) as client:
        assert (await log_in(client, console.admin)).status_code == 303
        assert (await chat(console, "You are a worthless idiot, you stupid moron <b>x</b>")).status_code == 400
        for _ in range(50):
            page = await client.get("/console/guards")
            if "toxicity:toxic" in page.text:
                break
            await asyncio.sleep(0.1)
        assert "toxicity:toxic" in page.text and "worthless idiot" not in page.text


async def test_prompts_are_redacted_and_escaped(console: Console) -> None:
    """Logged prompts reach a page only redacted and as text: the drift page's most novel prompts."""
    async with browser(console) as client:
        assert (await log_in(client, console.admin)).status_code == 303
        for i, text in enumerate(prompts("support", 40, seed=3)):
            reply = await chat(console, f"{text} <script>alert({i})</script> call me at +1 415 555 01{i:02d}")
            assert reply.status_code == 200
        for _ in range(150):  # the window of 40 is embedded and scored off the request path
            page = await client.get("/console/drift")
            if "&lt;script&gt;" in page.text:
                break
            await asyncio.sleep(0.2)
        assert "&lt;script&gt;alert(" in page.text and "<script>alert(" not in page.text
        assert "415 555" not in page.text and "&lt;PHONE" in page.text


async def test_an_evidently_report_is_linked_and_served_sandboxed(console: Console) -> None:
    reports = console.home / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "m.html").write_text("<html><script>document.title = 'evidently'</script></html>")
    async with browser(console) as client:
        assert (await client.get("/console/drift/m/report")).status_code == 303  # a page like the others
        assert (await log_in(client, console.admin)).status_code == 303
        assert 'href="/console/drift/m/report"' in (await client.get("/console/drift")).text
        report = await client.get("/console/drift/m/report")
        assert report.status_code == 200 and "evidently" in report.text
        assert report.headers.get_list("content-security-policy") == [REPORT_POLICY]  # only its own policy
        assert (await client.get("/console/drift/nope/report")).status_code == 404


async def test_writing_a_report_needs_the_csrf_token_and_a_closed_window(console: Console) -> None:
    async with browser(console) as client:
        assert (await log_in(client, console.admin)).status_code == 303
        token = csrf_of((await client.get("/console/drift")).text)
        assert (await client.post("/console/drift/support/report")).status_code == 403  # no CSRF token
        refused = await client.post("/console/drift/nope/report", data={"_csrf_token": token})
        assert refused.status_code == 303
        assert "No report for nope: it has no closed window yet." in (await client.get("/console/drift")).text
        assert not (console.home / "reports" / "nope.html").exists()
