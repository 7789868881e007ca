"""Operational routes: liveness and readiness for probes, metrics for Prometheus."""

from __future__ import annotations

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency

from gateway.security.auth import Authenticator
from gateway.upstream.backends import BackendPool
from monitor import metrics


class Readiness(msgspec.Struct):
    status: str
    # Public model names that have no healthy backend right now.
    unavailable_models: list[str]


@get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and its event loop answers."""
    return {"status": "ok"}


@get("/readyz")
async def readyz(pool: NamedDependency[BackendPool]) -> Response[Readiness]:
    """Ready when every configured model has at least one healthy backend."""
    missing = pool.unready_models()
    if missing:
        return Response(Readiness("not_ready", missing), status_code=503)
    return Response(Readiness("ready", []), status_code=200)


@get("/metrics")
async def prometheus_metrics(request: Request, auth: NamedDependency[Authenticator]) -> Response[bytes]:
    """Prometheus exposition of every ``driftgate_`` metric (all workers merged); with
    ``auth.metrics_token_file``, only for the scrape token or an admin key (it names every alias and version)."""
    await auth.check_scrape(request.headers.get("authorization"))
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
