"""Liveness and readiness for load balancers and Kubernetes probes."""

from __future__ import annotations

import msgspec
from litestar import Response, get
from litestar.datastructures import State

from gateway.runtime import Gateway


class Readiness(msgspec.Struct):
    status: str
    # Public model names that have no healthy backend right now.
    unavailable_models: list[str]


@get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and its event loop answers."""
    return {"status": "ok"}


@get("/readyz")
async def readyz(state: State) -> Response[Readiness]:
    """Ready when every configured model has at least one healthy backend."""
    gateway: Gateway = state.gateway
    missing = gateway.pool.unready_models()
    if missing:
        return Response(Readiness("not_ready", missing), status_code=503)
    return Response(Readiness("ready", []), status_code=200)
