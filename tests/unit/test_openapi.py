"""The OpenAPI document: every public route described, every reference resolvable, errors in OpenAI's shape."""

from __future__ import annotations

import json

from gateway.app import create_app
from gateway.config import ModelRoute
from gateway.edge.openapi import document
from tests.conftest import running_gateway, settings_for

UNDOCUMENTED = {"/metrics", "/openapi.json"}  # Prometheus text and the document itself


def refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(item) for item in node))
    return set()


def test_every_public_route_is_described() -> None:
    app = create_app(settings_for(ModelRoute("m", ["http://127.0.0.1:9"])))
    public = {
        route.path for route in app.routes if not route.path.startswith("/admin") and route.path not in UNDOCUMENTED
    }
    missing = public - set(document()["paths"])
    assert not missing, f"add these routes to gateway/edge/openapi.py: {sorted(missing)}"


def test_references_resolve_and_errors_have_all_four_fields() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    assert schemas["ErrorDetail"]["required"] == ["message", "type", "param", "code"]
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ChatCompletionRequest")
    assert {"400", "404", "413", "429", "503"} <= set(chat["responses"])


async def test_served_as_json(upstreams) -> None:
    upstream = await upstreams()
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url]))) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    assert json.loads(response.content) == json.loads(json.dumps(document()))
