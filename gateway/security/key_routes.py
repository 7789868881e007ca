"""``/admin/keys``: API keys over HTTP, the same operations as ``driftgate keys`` (admin scope).

A new key's token is in the creation response and nowhere else: the store keeps a salted digest. A change
takes effect in the worker that made it at once, and in the others within ``auth.cache_ttl_s``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import msgspec
from litestar import Request, Router, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from gateway.edge.admin_access import require_admin_scope
from gateway.edge.schemas import decode_request
from gateway.errors import KeyNotFound
from gateway.providers import AdminAudit
from gateway.security.auth import Authenticator
from gateway.security.keys import ApiKey

Limit = Annotated[int, msgspec.Meta(ge=1)]


class CreateKeyRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    scope: Literal["inference", "admin"] = "inference"
    # Models and adapter aliases the key may use (the others answer 404 to it); None: every model.
    adapters: Annotated[list[Annotated[str, msgspec.Meta(min_length=1)]], msgspec.Meta(min_length=1)] | None = None
    rpm: Limit | None = None
    tpm: Limit | None = None
    max_concurrent: Limit | None = None
    expires_in_days: Annotated[float, msgspec.Meta(gt=0)] | None = None


class CreatedKey(msgspec.Struct):
    key: ApiKey
    # ``Authorization: Bearer <token>``. Shown once: only a salted digest is stored.
    token: str


class KeyList(msgspec.Struct):
    data: list[ApiKey]


@get("/")
async def list_keys(auth: NamedDependency[Authenticator]) -> KeyList:
    return KeyList(await asyncio.to_thread(auth.store.list))


@post("/", status_code=201)
async def create_key(
    request: Request, auth: NamedDependency[Authenticator], audit: NamedDependency[AdminAudit]
) -> CreatedKey:
    body = decode_request(await request.body(), CreateKeyRequest)
    key, token = await asyncio.to_thread(
        auth.store.create,
        body.name,
        body.scope,
        adapters=body.adapters,
        rpm=body.rpm,
        tpm=body.tpm,
        max_concurrent=body.max_concurrent,
        expires_in_s=None if body.expires_in_days is None else body.expires_in_days * 86_400,
    )
    auth.forget()  # the first key turns authentication on
    audit("key.created", f"key:{key.id}", {"scope": key.scope, "name": key.name})
    return CreatedKey(key, token)


@delete("/{key_id:str}", status_code=200)
async def revoke_key(
    key_id: FromPath[str], auth: NamedDependency[Authenticator], audit: NamedDependency[AdminAudit]
) -> ApiKey:
    revoked = await asyncio.to_thread(auth.store.revoke, key_id)
    if revoked is None:
        raise KeyNotFound(f"No active key `{key_id}`.", param="key_id")
    auth.forget(key_id)
    audit("key.revoked", f"key:{key_id}", None)
    return revoked


key_router = Router("/admin/keys", route_handlers=[list_keys, create_key, revoke_key], guards=[require_admin_scope])
