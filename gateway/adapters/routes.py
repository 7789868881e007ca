"""``/admin/adapters``: register versions and move aliases between them.

Every route here sits behind :func:`require_admin_scope`, the one place the admin-scope key check goes.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from litestar import Request, Router, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath

from gateway.adapters.models import (
    AdapterList,
    AdapterVersion,
    AliasView,
    CanaryRequest,
    PromoteRequest,
    RegisterRequest,
    Snapshot,
    alias_view,
)
from gateway.adapters.registry import not_found
from gateway.adapters.service import Adapters
from gateway.errors import OpenAIError, invalid_request
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


def _audit(request: Request, action: str, subject: str, details: dict | None = None) -> None:
    """Only changes that took effect are recorded: the calls above raise before this on any refusal."""
    request.app.state.gateway.record(f"key:{request.state.admin}", action, subject, details)


def decode_request(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:  # a ValidationError is a DecodeError too
        raise invalid_request(f"Invalid request: {exc}") from exc


def _adapters(state: State) -> Adapters:
    adapters: Adapters | None = state.gateway.adapters
    if adapters is None:
        raise OpenAIError(404, "Adapters are off in this gateway (set `adapters:` in the config).", code="not_found")
    return adapters


def _listing(snapshot: Snapshot) -> AdapterList:
    aliases = sorted(snapshot.aliases.values(), key=lambda alias: alias.name)
    return AdapterList(snapshot.revision, [alias_view(snapshot, alias) for alias in aliases])


def _one(snapshot: Snapshot, alias: str) -> AliasView:
    found = snapshot.aliases.get(alias)
    if found is None:
        raise not_found(f"The adapter alias `{alias}`")
    return alias_view(snapshot, found)


@get("/")
async def list_adapters(state: State) -> AdapterList:
    return _listing(await _adapters(state).refresh())


@post("/", status_code=201)
async def register(request: Request, state: State) -> AdapterVersion:
    version = await _adapters(state).register(decode_request(await request.body(), RegisterRequest))
    _audit(request, "adapter.registered", version.name, {"weights": version.weights})
    return version


@get("/{alias:str}")
async def show(alias: FromPath[str], state: State) -> AliasView:
    return _one(await _adapters(state).refresh(), alias)


@post("/{alias:str}/promote", status_code=200)
async def promote(alias: FromPath[str], request: Request, state: State) -> AliasView:
    body = decode_request(await request.body(), PromoteRequest)
    view = _one(await _adapters(state).promote(alias, body.version), alias)
    _audit(request, "adapter.promoted", f"{alias}@{body.version}")
    return view


@post("/{alias:str}/canary", status_code=200)
async def canary(alias: FromPath[str], request: Request, state: State) -> AliasView:
    body = decode_request(await request.body(), CanaryRequest)
    view = _one(await _adapters(state).canary(alias, body.version, body.share), alias)
    _audit(request, "adapter.canary", f"{alias}@{body.version}", {"share": body.share})
    return view


@post("/{alias:str}/rollback", status_code=200)
async def rollback(alias: FromPath[str], request: Request, state: State) -> AliasView:
    view = _one(await _adapters(state).rollback(alias), alias)
    _audit(request, "adapter.rolled_back", alias)
    return view


@delete("/{alias:str}", status_code=200)
async def retire(alias: FromPath[str], request: Request, state: State) -> AdapterList:
    listing = _listing(await _adapters(state).retire(alias))
    _audit(request, "adapter.retired", alias)
    return listing


adapter_router = Router(
    "/admin/adapters",
    route_handlers=[list_adapters, register, show, promote, canary, rollback, retire],
    guards=[require_admin_scope],
)
