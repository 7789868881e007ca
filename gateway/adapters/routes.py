"""``/admin/adapters``: register versions and move aliases between them.

Every route here sits behind :func:`~gateway.edge.admin_access.require_admin_scope`.
"""

from __future__ import annotations

from litestar import Request, Router, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from gateway.adapters import merging
from gateway.adapters.lineage import Lineage, lineage
from gateway.adapters.merging import MergeRequest
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
from gateway.edge.admin_access import require_admin_scope
from gateway.edge.schemas import decode_request
from gateway.providers import AdminAudit


def _listing(snapshot: Snapshot) -> AdapterList:
    aliases = sorted(snapshot.aliases.values(), key=lambda alias: alias.name)
    return AdapterList(snapshot.revision, [alias_view(snapshot, alias) for alias in aliases])


def _one(snapshot: Snapshot, alias: str) -> AliasView:
    found = snapshot.aliases.get(alias)
    if found is None:
        raise not_found(f"The adapter alias `{alias}`")
    return alias_view(snapshot, found)


@get("/")
async def list_adapters(adapters: NamedDependency[Adapters]) -> AdapterList:
    return _listing(await adapters.refresh())


@post("/", status_code=201)
async def register(
    request: Request, adapters: NamedDependency[Adapters], audit: NamedDependency[AdminAudit]
) -> AdapterVersion:
    version = await adapters.register(decode_request(await request.body(), RegisterRequest))
    audit("adapter.registered", version.name, {"weights": version.weights})
    return version


@get("/{alias:str}")
async def show(alias: FromPath[str], adapters: NamedDependency[Adapters]) -> AliasView:
    return _one(await adapters.refresh(), alias)


@get("/{alias:str}/versions/{number:int}/lineage")
async def version_lineage(alias: FromPath[str], number: FromPath[int], adapters: NamedDependency[Adapters]) -> Lineage:
    return lineage(await adapters.refresh(), alias, number)


@post("/{alias:str}/promote", status_code=200)
async def promote(
    alias: FromPath[str], request: Request, adapters: NamedDependency[Adapters], audit: NamedDependency[AdminAudit]
) -> AliasView:
    body = decode_request(await request.body(), PromoteRequest)
    view = _one(await adapters.promote(alias, body.version), alias)
    audit("adapter.promoted", f"{alias}@{body.version}", None)
    return view


@post("/{alias:str}/canary", status_code=200)
async def canary(
    alias: FromPath[str], request: Request, adapters: NamedDependency[Adapters], audit: NamedDependency[AdminAudit]
) -> AliasView:
    body = decode_request(await request.body(), CanaryRequest)
    view = _one(await adapters.canary(alias, body.version, body.share), alias)
    audit("adapter.canary", f"{alias}@{body.version}", {"share": body.share})
    return view


@post("/{alias:str}/rollback", status_code=200)
async def rollback(
    alias: FromPath[str], adapters: NamedDependency[Adapters], audit: NamedDependency[AdminAudit]
) -> AliasView:
    view = _one(await adapters.rollback(alias), alias)
    audit("adapter.rolled_back", alias, None)
    return view


@post("/{alias:str}/merge", status_code=201)
async def merge(
    alias: FromPath[str], request: Request, adapters: NamedDependency[Adapters], audit: NamedDependency[AdminAudit]
) -> AdapterVersion:
    body = decode_request(await request.body(), MergeRequest)
    version = await merging.merge(adapters, alias, body)
    audit("adapter.merged", version.name, version.training_run)
    return version


@delete("/{alias:str}", status_code=200)
async def retire(
    alias: FromPath[str], adapters: NamedDependency[Adapters], audit: NamedDependency[AdminAudit]
) -> AdapterList:
    listing = _listing(await adapters.retire(alias))
    audit("adapter.retired", alias, None)
    return listing


adapter_router = Router(
    "/admin/adapters",
    route_handlers=[list_adapters, register, show, version_lineage, promote, canary, rollback, merge, retire],
    guards=[require_admin_scope],
)
