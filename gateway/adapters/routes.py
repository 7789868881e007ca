"""``/admin/adapters``: register versions and move aliases between them.

Every route here sits behind :func:`~gateway.edge.admin_access.require_admin_scope`.
"""

from __future__ import annotations

from litestar import Request, Router, delete, get, post
from litestar.datastructures import State
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
from gateway.edge.admin_access import audit, require_admin_scope
from gateway.edge.schemas import decode_request
from gateway.errors import FeatureNotConfigured


def _adapters(state: State) -> Adapters:
    adapters: Adapters | None = state.gateway.adapters
    if adapters is None:
        raise FeatureNotConfigured("Adapters are off in this gateway (set `adapters:` in the config).")
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
    audit(request, "adapter.registered", version.name, {"weights": version.weights})
    return version


@get("/{alias:str}")
async def show(alias: FromPath[str], state: State) -> AliasView:
    return _one(await _adapters(state).refresh(), alias)


@post("/{alias:str}/promote", status_code=200)
async def promote(alias: FromPath[str], request: Request, state: State) -> AliasView:
    body = decode_request(await request.body(), PromoteRequest)
    view = _one(await _adapters(state).promote(alias, body.version), alias)
    audit(request, "adapter.promoted", f"{alias}@{body.version}")
    return view


@post("/{alias:str}/canary", status_code=200)
async def canary(alias: FromPath[str], request: Request, state: State) -> AliasView:
    body = decode_request(await request.body(), CanaryRequest)
    view = _one(await _adapters(state).canary(alias, body.version, body.share), alias)
    audit(request, "adapter.canary", f"{alias}@{body.version}", {"share": body.share})
    return view


@post("/{alias:str}/rollback", status_code=200)
async def rollback(alias: FromPath[str], request: Request, state: State) -> AliasView:
    view = _one(await _adapters(state).rollback(alias), alias)
    audit(request, "adapter.rolled_back", alias)
    return view


@delete("/{alias:str}", status_code=200)
async def retire(alias: FromPath[str], request: Request, state: State) -> AdapterList:
    listing = _listing(await _adapters(state).retire(alias))
    audit(request, "adapter.retired", alias)
    return listing


adapter_router = Router(
    "/admin/adapters",
    route_handlers=[list_adapters, register, show, promote, canary, rollback, retire],
    guards=[require_admin_scope],
)
