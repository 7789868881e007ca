"""``/console``: the operator console's pages and actions.

Pages are server-rendered Jinja templates (autoescaped). Actions are plain HTML forms posting back with the
CSRF token and answering with a redirect (303) to the page, carrying a one-line result in the session. Every
change calls the same service method as the admin API and is audited under the logged-in key
(:func:`gateway.providers.provide_audit`), with the same action names.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router

from gateway.console import views
from gateway.console.parts import ConsoleParts
from gateway.console.session import (
    LOGIN_PATH,
    LoginRequired,
    login_redirect,
    middleware,
    require_console_admin,
    sign_in,
    usable_key,
)
from gateway.console.settings import ConsoleSettings
from gateway.domain_errors import DomainError
from gateway.errors import RouteNotFound
from gateway.providers import AdminAudit
from gateway.security.auth import Authenticator

STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"
ADMIN = [require_console_admin]
# No script but our own files, nothing framed, nothing sent elsewhere; pages are never cached.
SECURITY_HEADERS = [
    ResponseHeader(
        name="content-security-policy",
        value="default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    ResponseHeader(name="x-content-type-options", value="nosniff"),
    ResponseHeader(name="referrer-policy", value="no-referrer"),
    ResponseHeader(name="cache-control", value="no-store"),
]
# An Evidently report runs its own inline scripts: sandboxed, so it has no origin, cookies or console access.
REPORT_POLICY = "sandbox allow-scripts; default-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob:"


def _page(request: Request, name: str, page: str, **context: Any) -> Template:
    flash = request.session.pop("flash", None) if request.session else None
    return Template(
        template_name=name,
        context={"page": page, "who": request.session.get("key_name"), "flash": flash, **context},
    )


def _done(request: Request, to: str, message: str) -> Redirect:
    request.session["flash"] = message
    return Redirect(to, status_code=303)


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {name: str(form.get(name, "")).strip() for name in form}


# Login.


@get("/login", name="console_login")
async def login_page(request: Request) -> Template:
    request.clear_session()  # a visitor's session is stored only once they log in
    return Template(template_name="login.html", context={"page": "login", "error": None})


@post("/login", status_code=200)
async def login(request: Request, auth: NamedDependency[Authenticator]) -> Template | Redirect:
    token = (await _form(request)).get("api_key", "")
    key = await usable_key(auth, token) if token else None
    if key is None:
        error, status = "That is not a usable API key.", 401
    elif key.scope != "admin":
        error, status = "This key has the inference scope: the console needs an admin key.", 403
    else:
        sign_in(request, key)
        return Redirect("/console", status_code=303)
    request.clear_session()
    return Template(template_name="login.html", context={"page": "login", "error": error}, status_code=status)


@post("/logout", guards=ADMIN)
async def logout(request: Request) -> Redirect:
    request.clear_session()
    return Redirect(LOGIN_PATH, status_code=303)


# Overview.


@get("/", guards=ADMIN)
async def overview(request: Request, console: NamedDependency[ConsoleParts]) -> Template:
    return _page(request, "overview.html", "overview", **views.overview(console.sampler))


@get("/overview/stats", guards=ADMIN)
async def overview_stats(request: Request, console: NamedDependency[ConsoleParts]) -> Template:
    """The numbers of the overview, refreshed in place by htmx."""
    return Template(template_name="overview_stats.html", context=views.overview(console.sampler))


# Adapters.


@get("/adapters", guards=ADMIN)
async def adapters_page(request: Request, console: NamedDependency[ConsoleParts]) -> Template:
    aliases = []
    if console.adapters is not None:
        snapshot = await console.adapters.refresh()
        aliases = [views.alias_row(snapshot, alias) for alias in sorted(snapshot.aliases)]
    return _page(request, "adapters.html", "adapters", enabled=console.adapters is not None, aliases=aliases)


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) >= 1 else None


@post("/adapters/{alias:str}/{action:str}", guards=ADMIN)
async def adapter_action(
    alias: FromPath[str],
    action: FromPath[str],
    request: Request,
    console: NamedDependency[ConsoleParts],
    audit: NamedDependency[AdminAudit],
) -> Redirect:
    """promote / canary / rollback, as ``POST /admin/adapters/{alias}/...`` does them."""
    adapters, form = console.adapters, await _form(request)
    if adapters is None or action not in ("promote", "canary", "rollback"):
        raise RouteNotFound(f"No adapter action `{action}`.")
    number = _number(form.get("version", ""))
    try:
        if action == "rollback":
            await adapters.rollback(alias)
            audit("adapter.rolled_back", alias, None)
            return _done(request, "/console/adapters", f"{alias} rolled back.")
        if number is None:
            return _done(request, "/console/adapters", "Pick a version number.")
        if action == "promote":
            await adapters.promote(alias, number)
            audit("adapter.promoted", f"{alias}@{number}", None)
            return _done(request, "/console/adapters", f"{alias}@{number} promoted to production.")
        share = float(form.get("share") or "0.1")
        if not 0 < share < 1:
            return _done(request, "/console/adapters", "A canary share is between 0 and 1.")
        await adapters.canary(alias, number, share)
        audit("adapter.canary", f"{alias}@{number}", {"share": share})
        return _done(request, "/console/adapters", f"{alias}@{number} on canary at {share:.0%}.")
    except (DomainError, ValueError) as exc:
        return _done(request, "/console/adapters", f"{action} {alias} refused: {exc}")


# Drift.


@get("/drift", guards=ADMIN)
async def drift_page(request: Request, console: NamedDependency[ConsoleParts]) -> Template:
    aliases = await views.drift(console.drift, console.sampler, console.request_log, console.home)
    events = list(console.drift.events)[-20:] if console.drift is not None else []
    return _page(
        request,
        "drift.html",
        "drift",
        enabled=console.drift is not None,
        aliases=aliases,
        events=events[::-1],
        reports=views.reports_dir(console.home),
    )


@get("/drift/{alias:str}/report", guards=ADMIN)
async def drift_report(alias: FromPath[str], console: NamedDependency[ConsoleParts]) -> Response[bytes]:
    """The alias's Evidently report, if one was written (``driftgate drift report ALIAS --out``)."""
    path = views.evidently_report(console.home, alias)
    if path is None:
        raise RouteNotFound(f"No drift report for `{alias}`.")
    body = await asyncio.to_thread(path.read_bytes)
    return Response(body, media_type="text/html; charset=utf-8", headers={"content-security-policy": REPORT_POLICY})


@post("/drift/{alias:str}/report", guards=ADMIN)
async def write_drift_report(
    alias: FromPath[str], request: Request, console: NamedDependency[ConsoleParts]
) -> Redirect:
    """Evidently's report of the alias's last closed window against its whole reference, written where the page
    links it. Evidently draws a t-SNE picture: seconds of CPU, so in a thread."""
    from monitor.drift_report import write_html_report  # heavy: only when a report is asked for

    compared = console.drift.monitor.last_window(alias) if console.drift is not None else None
    if compared is None:
        return _done(request, "/console/drift", f"No report for {alias}: it has no closed window yet.")
    window, reference = compared
    path = views.reports_dir(console.home) / f"{alias}.html"
    method = console.drift.monitor.settings.method
    await asyncio.to_thread(write_html_report, window.embeddings, reference, path, method, alias)
    return _done(
        request,
        "/console/drift",
        f"Evidently report written for {alias}: window {window.sequence} ({len(window.request_ids)} prompts).",
    )


# Loop.


@get("/loop", guards=ADMIN)
async def loop_page(request: Request, console: NamedDependency[ConsoleParts]) -> Template:
    runs = await asyncio.to_thread(console.loop_store.list) if console.loop_store is not None else []
    return _page(request, "loop.html", "loop", enabled=console.loop_store is not None, runs=runs)


@get("/loop/{run_id:str}", guards=ADMIN)
async def loop_run(run_id: FromPath[str], request: Request, console: NamedDependency[ConsoleParts]) -> Template:
    run = await asyncio.to_thread(console.loop_store.get, run_id) if console.loop_store is not None else None
    if run is None:
        raise RouteNotFound(f"No loop run `{run_id}`.")
    return _page(request, "loop_run.html", "loop", run=run, can_approve=console.loop is not None)


@post("/loop/{run_id:str}/approve", guards=ADMIN)
async def approve_run(run_id: FromPath[str], request: Request, console: NamedDependency[ConsoleParts]) -> Redirect:
    """As ``POST /admin/loop/{id}/approve`` (the controller records the approval in the run and the audit)."""
    if console.loop is None:
        return _done(request, f"/console/loop/{run_id}", "The closed loop is off in this gateway.")
    try:
        await console.loop.approve(run_id, f"key:{request.state.admin}")
    except DomainError as exc:
        return _done(request, f"/console/loop/{run_id}", f"Not approved: {exc}")
    return _done(request, f"/console/loop/{run_id}", "Approved: the run is queued.")


# Guards.


@get("/guards", guards=ADMIN)
async def guards_page(request: Request, console: NamedDependency[ConsoleParts]) -> Template:
    blocked = await asyncio.to_thread(views.blocked_requests, console.request_log)
    return _page(
        request,
        "guards.html",
        "guards",
        plot=views.guard_blocks(console.sampler),
        blocked=blocked,
        logged=console.request_log is not None,
    )


# Keys.


@get("/keys", guards=ADMIN)
async def keys_page(request: Request, auth: NamedDependency[Authenticator]) -> Template:
    keys = await asyncio.to_thread(auth.store.list)
    return _page(request, "keys.html", "keys", keys=keys, created=None)


@post("/keys", guards=ADMIN, status_code=200)
async def create_key(
    request: Request, auth: NamedDependency[Authenticator], audit: NamedDependency[AdminAudit]
) -> Template | Redirect:
    """As ``POST /admin/keys``; the token is on this one response and nowhere else."""
    form = await _form(request)
    name, scope = form.get("name", ""), form.get("scope", "inference")
    if not name or len(name) > 200 or scope not in ("inference", "admin"):
        return _done(request, "/console/keys", "A key needs a name (1-200 characters) and a scope.")
    key, token = await asyncio.to_thread(auth.store.create, name, scope)
    auth.forget()
    audit("key.created", f"key:{key.id}", {"scope": key.scope, "name": key.name})
    keys = await asyncio.to_thread(auth.store.list)
    return _page(request, "keys.html", "keys", keys=keys, created={"key": key, "token": token})


@post("/keys/{key_id:str}/revoke", guards=ADMIN)
async def revoke_key(
    key_id: FromPath[str], request: Request, auth: NamedDependency[Authenticator], audit: NamedDependency[AdminAudit]
) -> Redirect:
    revoked = await asyncio.to_thread(auth.store.revoke, key_id)
    if revoked is None:
        return _done(request, "/console/keys", f"No active key {key_id}.")
    auth.forget(key_id)
    audit("key.revoked", f"key:{key_id}", None)
    return _done(request, "/console/keys", f"Key {key_id} revoked.")


def console_router(settings: ConsoleSettings, csrf_secret: str) -> Router:
    """The console's routes with their own middleware (session, CSRF) and headers; its static files beside."""
    return Router(
        "/console",
        route_handlers=[
            login_page,
            login,
            logout,
            overview,
            overview_stats,
            adapters_page,
            adapter_action,
            drift_page,
            drift_report,
            write_drift_report,
            loop_page,
            loop_run,
            approve_run,
            guards_page,
            keys_page,
            create_key,
            revoke_key,
            create_static_files_router("/static", directories=[STATIC], name="console_static", include_in_schema=False),
        ],
        middleware=middleware(settings, csrf_secret),
        response_headers=SECURITY_HEADERS,
        exception_handlers={LoginRequired: login_redirect},
        include_in_schema=False,  # pages for a browser, not API operations (/openapi.json leaves them out)
    )
