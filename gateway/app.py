"""The Litestar application: routes, their dependencies (:mod:`gateway.providers`), error shapes (one handler
per kind: catalog errors, domain refusals, Litestar's own, the rest) and the per-worker lifespan."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template import TemplateConfig

from gateway import errors, providers
from gateway.adapters.routes import adapter_router
from gateway.config import SETTINGS_ENV, Settings, decode_settings, load_settings, state_url
from gateway.console import routes as console_routes
from gateway.console.csrf_secret import csrf_secret
from gateway.console.database_store import DatabaseStore
from gateway.console.sampler import Sampler
from gateway.console.session import SESSION_STORE
from gateway.domain_errors import DomainError
from gateway.drift.routes import drift_state
from gateway.edge.body_deadline import BodyDeadline
from gateway.edge.docs_routes import api_docs, api_docs_asset
from gateway.edge.feedback_routes import feedback
from gateway.edge.health_routes import healthz, prometheus_metrics, readyz
from gateway.edge.moderations_routes import moderations
from gateway.edge.openai_routes import chat_completions, completions, embeddings, list_models, responses, retrieve_model
from gateway.edge.openapi import openapi_json
from gateway.edge.request_path import ClientDisconnected, client_disconnected_handler
from gateway.host import process_guard
from gateway.loop.routes import loop_router, training_router
from gateway.runtime import Gateway
from gateway.security.key_routes import key_router
from monitor.database import create_engine
from monitor.tracing import Tracing
from monitor.tracing import from_settings as tracing_from_settings


def create_app(settings: Settings | None = None, tracing: Tracing | None = None) -> Litestar:
    """Build the app; without ``settings`` it reads what the CLI handed over, or the environment.

    ``tracing`` defaults to what the settings ask for (nothing, or an OTLP exporter).
    """
    if settings is None:  # in a granian worker (or a plain ASGI server given the factory)
        process_guard.follow_supervisor(signal.SIGKILL)
        handed_over = os.environ.get(SETTINGS_ENV)
        settings = decode_settings(handed_over) if handed_over else load_settings(os.environ.get("DRIFTGATE_CONFIG"))
    gateway = Gateway(settings, tracing if tracing is not None else tracing_from_settings(settings.tracing))

    console = settings.console
    # The console's sessions and CSRF secret, in the state database: replicas sharing it share console logins.
    console_db = create_engine(state_url(settings)) if console.enabled else None

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with gateway.running():
            app.state.gateway = gateway
            sampler = Sampler(console.sample_every_s, gateway.drift.states if gateway.drift is not None else None)
            app.state.console_sampler = sampler
            sampling = asyncio.create_task(sampler.run()) if console.enabled else None
            # Serving soon: a dead supervisor then means drain, then stop. Asked for once the worker serves, not
            # here: granian's SIGTERM handler blocks forever in a worker whose startup has not finished, and a
            # supervisor killed in that gap (its first worker ready, this one a moment behind) would leave it.
            serving = asyncio.get_running_loop().call_later(
                process_guard.SERVING_AFTER_S, process_guard.follow_supervisor, signal.SIGTERM
            )
            try:
                yield
            finally:
                serving.cancel()
                if sampling is not None:
                    sampling.cancel()
                    with suppress(asyncio.CancelledError):
                        await sampling
                if console_db is not None:
                    console_db.dispose()

    # The console (off: no routes, no templates, no session store, no sampler).
    console_handlers = (
        [console_routes.console_router(console, csrf_secret(console_db))] if console_db is not None else []
    )
    templates = (
        TemplateConfig(directory=console_routes.TEMPLATES, engine=JinjaTemplateEngine) if console.enabled else None
    )
    stores = {SESSION_STORE: DatabaseStore.open(console_db, SESSION_STORE)} if console_db is not None else None

    return Litestar(
        route_handlers=[
            chat_completions,
            completions,
            embeddings,
            list_models,
            retrieve_model,
            responses,
            healthz,
            readyz,
            openapi_json,
            api_docs,
            api_docs_asset,
            prometheus_metrics,
            drift_state,
            adapter_router,
            feedback,
            moderations,
            loop_router,
            training_router,
            key_router,
            *console_handlers,
        ],
        lifespan=[lifespan],
        dependencies=providers.dependencies(),
        exception_handlers={
            errors.OpenAIError: errors.openai_error_handler,
            DomainError: errors.domain_error_handler,
            ClientDisconnected: client_disconnected_handler,
            HTTPException: errors.http_exception_handler,
            Exception: errors.internal_error_handler,
        },
        request_max_body_size=settings.max_body_bytes,
        middleware=[DefineMiddleware(BodyDeadline, settings=settings.body_read)],
        openapi_config=None,
        template_config=templates,
        stores=stores,
    )
