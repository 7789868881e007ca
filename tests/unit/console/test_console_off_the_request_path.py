"""The console adds nothing to the request path: its middlewares sit on its own routes, and with the console
off there is no /console and no sampler."""

from __future__ import annotations

import sqlalchemy as sa
from litestar.routes import HTTPRoute

from gateway.app import create_app
from gateway.config import ModelRoute, state_url
from gateway.console.settings import ConsoleSettings
from gateway.edge.body_deadline import BodyDeadline
from monitor.database import create_engine
from tests.conftest import running_gateway, settings_for


def _middleware_by_path(app) -> dict[str, list]:
    """Each route's middleware beyond the app-wide body deadline (every route reads bodies under it)."""
    found = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for entry in route.route_handler_map.values():
                handler = entry[0] if isinstance(entry, tuple) else entry
                own = [m for m in handler.resolve_middleware() if getattr(m, "middleware", None) is not BodyDeadline]
                found.setdefault(route.path, []).extend(own)
    return found


def test_only_console_routes_run_the_session_and_csrf_middleware(tmp_path) -> None:
    app = create_app(settings_for(ModelRoute("m", ["http://127.0.0.1:9"]), home=str(tmp_path)))
    by_path = _middleware_by_path(app)
    assert all(middleware for path, middleware in by_path.items() if path.startswith("/console"))
    assert not [path for path, middleware in by_path.items() if middleware and not path.startswith("/console")]
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"} <= set(by_path)


async def test_a_gateway_with_the_console_off_has_no_console(tmp_path, upstreams) -> None:
    upstream = await upstreams()
    settings = settings_for(ModelRoute("m", [upstream.url]), home=str(tmp_path), console=ConsoleSettings(enabled=False))
    async with running_gateway(settings) as client:
        assert (await client.get("/console/login")).status_code == 404
        assert (await client.post("/v1/chat/completions", json={"model": "m", "messages": []})).status_code in (
            200,
            400,
        )
    assert not (tmp_path / "console").exists()
    engine = create_engine(state_url(settings))
    tables = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert "api_keys" in tables and not tables & {"litestar_store", "console_secrets"}  # no session store made
