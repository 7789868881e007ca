"""What every ``/admin`` route shares: the admin-scope check, strict body decoding, and the audit record."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from gateway.errors import invalid_request
from gateway.security.auth import admin_only

T = TypeVar("T")


async def require_admin_scope(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Every /admin route: an admin-scope key once any key exists (before that the gateway is localhost-only)."""
    gateway = connection.app.state.gateway
    if gateway.auth is None:
        return
    key = await gateway.auth.key_for(connection.headers.get("authorization"))
    if key is not None and key.scope != "admin":
        raise admin_only()
    connection.state.admin = key.id if key is not None else "local"


def audit(request: Request, action: str, subject: str, details: dict | None = None) -> None:
    """Record a change made by the calling admin. Call it after the change took effect, never before."""
    request.app.state.gateway.record(f"key:{request.state.admin}", action, subject, details)


def decode_request(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:  # a ValidationError is a DecodeError too
        raise invalid_request(f"Invalid request: {exc}") from exc
