"""What every ``/admin`` route shares: the admin-scope check and the audit record (bodies are decoded with
:func:`gateway.edge.schemas.decode_request`, like the OpenAI routes)."""

from __future__ import annotations

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from gateway.errors import InsufficientScope


async def require_admin_scope(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Every /admin route: an admin-scope key once any key exists (before that the gateway is localhost-only)."""
    gateway = connection.app.state.gateway
    if gateway.auth is None:
        return
    key = await gateway.auth.key_for(connection.headers.get("authorization"))
    if key is not None and key.scope != "admin":
        raise InsufficientScope()
    connection.state.admin = key.id if key is not None else "local"


def audit(request: Request, action: str, subject: str, details: dict | None = None) -> None:
    """Record a change made by the calling admin. Call it after the change took effect, never before."""
    request.app.state.gateway.record(f"key:{request.state.admin}", action, subject, details)
