"""What route handlers receive by Litestar's dependency injection: the parts of this worker's :class:`Gateway`.

A handler names a part as a parameter (``adapters: Adapters``) and gets it; it never reaches into the app's
state. Each provider reads ``state.gateway`` once and is a plain function (``sync_to_thread=False``: no
thread hop, no task), so a handler with one dependency costs what reading the state did. A part this
gateway's config leaves off is refused here, once, with :class:`~gateway.errors.FeatureNotConfigured`
(404), instead of in every handler.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide

from gateway.adapters.service import Adapters
from gateway.console.parts import ConsoleParts
from gateway.drift.watch import DriftWatch
from gateway.edge.guarding import GuardSet
from gateway.edge.request_path import RequestPath
from gateway.errors import FeatureNotConfigured
from gateway.loop.controller import LoopController
from gateway.loop.store import LoopStore
from gateway.runtime import Gateway
from gateway.security.auth import Authenticator
from gateway.upstream.backends import BackendPool
from monitor.request_log_writer import RequestLogWriter
from training.jobs import JobRunner

# An admin's change, recorded under the calling key: audit(action, subject, details).
AdminAudit = Callable[[str, str, dict | None], None]

_NO_REQUEST_LOG = "The request log is off in this gateway; feedback needs it (set `request_log:` in the config)."


def _gateway(state: State) -> Gateway:
    return state.gateway


def provide_request_path(state: State) -> RequestPath:
    return _gateway(state).request_path


def provide_pool(state: State) -> BackendPool:
    return _gateway(state).pool


def provide_auth(state: State) -> Authenticator:
    auth = _gateway(state).auth
    assert auth is not None  # set by the lifespan before the first request is served
    return auth


def provide_adapters(state: State) -> Adapters:
    adapters = _gateway(state).adapters
    if adapters is None:
        raise FeatureNotConfigured("Adapters are off in this gateway (set `adapters:` in the config).")
    return adapters


def provide_loop(state: State) -> LoopController:
    loop = _gateway(state).loop
    if loop is None:
        raise FeatureNotConfigured("The closed loop is off in this gateway (set `loop:` and `adapters:`).")
    return loop


def provide_loop_store(state: State) -> LoopStore:
    store = _gateway(state).loop_store
    if store is None:  # it opens with the request log
        raise FeatureNotConfigured(_NO_REQUEST_LOG)
    return store


def provide_request_log(state: State) -> RequestLogWriter:
    writer = _gateway(state).request_log
    if writer is None:
        raise FeatureNotConfigured(_NO_REQUEST_LOG)
    return writer


def provide_drift(state: State) -> DriftWatch | None:
    """The drift watch, or None when drift detection is off (its report is then empty, not an error)."""
    return _gateway(state).drift


def provide_guard_set(state: State) -> GuardSet:
    return _gateway(state).guards


def provide_jobs(state: State) -> JobRunner:
    return _gateway(state).jobs


def provide_console(state: State) -> ConsoleParts:
    """What the operator console reads; its sampler is started by the app's lifespan (``state.console_sampler``)."""
    gateway = _gateway(state)
    assert gateway.auth is not None  # set by the lifespan before the first request is served
    return ConsoleParts(
        home=Path(gateway.settings.home),
        sampler=state.console_sampler,
        auth=gateway.auth,
        adapters=gateway.adapters,
        drift=gateway.drift,
        loop=gateway.loop,
        loop_store=gateway.loop_store,
        request_log=gateway.request_log.store if gateway.request_log is not None else None,
    )


def provide_audit(request: Request) -> AdminAudit:
    """The audit trail, writing as the admin key that the admin guard admitted (``request.state.admin``).
    Handlers call it after the change took effect, never before."""
    record = _gateway(request.app.state).record
    actor = f"key:{request.state.admin}"
    return lambda action, subject, details: record(actor, action, subject, details)


def dependencies() -> dict[str, Provide]:
    """The app's providers by parameter name (fresh ``Provide`` objects for each app)."""
    providers = {
        "request_path": provide_request_path,
        "pool": provide_pool,
        "auth": provide_auth,
        "adapters": provide_adapters,
        "loop": provide_loop,
        "loop_store": provide_loop_store,
        "request_log": provide_request_log,
        "drift": provide_drift,
        "guard_set": provide_guard_set,
        "jobs": provide_jobs,
        "audit": provide_audit,
        "console": provide_console,
    }
    return {name: Provide(provider, sync_to_thread=False) for name, provider in providers.items()}
