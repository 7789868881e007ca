"""Who may use the console: an admin key entered once in the login form, then a server-side session.

The browser holds only a random session id (cookie ``driftgate_console``: HttpOnly, SameSite=Strict, Secure
unless ``console.secure_cookie`` is off); the key itself is checked once and never stored, in the session or
anywhere in the browser. The session records the key's id, and every page checks that key is still usable, so
revoking it ends its console sessions. Every POST carries a CSRF token (Litestar's double-submit
middleware: a signed token in a cookie that must match the form's ``_csrf_token``).

Sessions (:class:`gateway.console.database_store.DatabaseStore`) and the CSRF secret
(:mod:`gateway.console.csrf_secret`) live in the gateway's state database, so every worker of every replica
sharing that database shares them: no sticky sessions. Both middlewares sit on the console's router only:
other routes never run them.
"""

from __future__ import annotations

import asyncio
import time

from litestar import Request, Response
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.response import Redirect
from litestar.types import Message, ScopeSession

from gateway.console.settings import ConsoleSettings
from gateway.providers import provide_auth
from gateway.security.auth import Authenticator
from gateway.security.keys import ApiKey, InvalidKey

SESSION_STORE = "console_sessions"
SESSION_COOKIE = "driftgate_console"
CSRF_COOKIE = "driftgate_console_csrf"
LOGIN_PATH = "/console/login"


class LoginRequired(Exception):
    """No session, or its key is no longer usable: the page answers with a redirect to the login form."""


class _RotatingBackend(ServerSideSessionBackend):
    """Litestar's server-side sessions, except that a login gets a new session id and the old one's data is
    deleted (Litestar keeps the id a cookie brought; an id seen before login must not become a logged-in one)."""

    def get_session_id(self, connection: ASGIConnection) -> str:
        if getattr(connection.state, "new_session", None) is None:
            return super().get_session_id(connection)
        if not connection.state.new_session:
            connection.state.new_session = self.generate_session_id()
        return connection.state.new_session

    async def store_in_message(self, scope_session: ScopeSession, message: Message, connection: ASGIConnection) -> None:
        old = connection.cookies.get(self.config.key)
        if getattr(connection.state, "new_session", None) is not None and old and old != "null":
            await self.delete(old, store=self.config.get_store_from_app(connection.scope["app"]))
        await super().store_in_message(scope_session, message, connection)


class _SessionConfig(ServerSideSessionConfig):
    _backend_class = _RotatingBackend


def login_redirect(request: Request, _: LoginRequired) -> Response:
    """To the login form; an htmx refresh is told to load it as a page instead of swapping it into a panel."""
    if request.headers.get("hx-request"):
        return Response(b"", status_code=200, headers={"hx-redirect": LOGIN_PATH})
    return Redirect(LOGIN_PATH, status_code=303)


def middleware(settings: ConsoleSettings, csrf_secret: str) -> list[DefineMiddleware]:
    """The session and CSRF middlewares, for the console's router only (the session store is the app's
    :data:`SESSION_STORE`)."""
    sessions = _SessionConfig(
        key=SESSION_COOKIE,
        store=SESSION_STORE,
        max_age=settings.session_max_age_s,
        renew_on_access=True,
        path="/console",
        secure=settings.secure_cookie,
        httponly=True,
        samesite="strict",
    )
    csrf = CSRFConfig(
        secret=csrf_secret,
        cookie_name=CSRF_COOKIE,
        cookie_path="/console",
        cookie_secure=settings.secure_cookie,
        cookie_httponly=True,  # the token reaches forms through the page, not through scripts
        cookie_samesite="strict",
    )
    return [sessions.middleware, DefineMiddleware(CSRFMiddleware, config=csrf)]


async def usable_key(auth: Authenticator, token: str) -> ApiKey | None:
    """The usable key ``token`` names (any scope), or None."""
    try:
        key = await asyncio.to_thread(auth.store.verify, token)
    except InvalidKey:
        return None
    return key if key.usable(time.time()) else None


def sign_in(request: Request, key: ApiKey) -> None:
    """A fresh session id for the new login (an id seen before it never becomes a logged-in one)."""
    request.state.new_session = ""
    request.set_session({"key_id": key.id, "key_name": key.name, "since": time.time()})


async def require_console_admin(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Every console page: a session whose admin key is still usable. Sets ``state.admin`` as the admin API's
    guard does, so :func:`gateway.providers.provide_audit` records the change under that key."""
    key_id = connection.session.get("key_id")
    if not key_id:
        connection.clear_session()  # nothing is stored for a visitor who is not logged in
        raise LoginRequired()
    keys = await asyncio.to_thread(provide_auth(connection.app.state).store.list)
    now = time.time()
    if not any(key.id == key_id and key.scope == "admin" and key.usable(now) for key in keys):
        connection.clear_session()
        raise LoginRequired()
    connection.state.admin = key_id
