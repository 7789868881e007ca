"""What every ``/admin`` route shares: the admin-scope check (a Litestar guard). The audit record comes by
dependency injection (``audit``, :func:`gateway.providers.provide_audit`), bodies are decoded with
:func:`gateway.edge.schemas.decode_request` like the OpenAI routes'."""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from gateway.errors import InsufficientScope
from gateway.providers import provide_auth


async def require_admin_scope(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Every /admin route: an admin-scope key once any key exists (before that the gateway is localhost-only).

    Guards take no injected parameters, so this asks the providers module directly."""
    key = await provide_auth(connection.app.state).key_for(connection.headers.get("authorization"))
    if key is not None and key.scope != "admin":
        raise InsufficientScope()
    connection.state.admin = key.id if key is not None else "local"
