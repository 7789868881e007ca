"""The OpenAPI document: every route of the app described, every reference resolvable, errors in OpenAI's shape;
and the API page at /docs, served from the package's own files."""

from __future__ import annotations

import json
from pathlib import Path

from litestar import Litestar, get
from litestar.params import FromPath
from openapi_spec_validator import validate

from gateway.app import create_app
from gateway.config import ModelRoute, Settings, state_url
from gateway.edge import openapi
from gateway.edge.docs_routes import ASSETS
from gateway.edge.openapi import document, undocumented
from gateway.security.keys import KeyStore
from tests.conftest import running_gateway, settings_for


def refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(item) for item in node))
    return set()


def app() -> Litestar:
    return create_app(settings_for(ModelRoute("m", ["http://127.0.0.1:9"])))


async def keyed_settings(tmp_path: Path, upstreams) -> Settings:
    """A gateway with keys on: the document and the page are public all the same."""
    upstream = await upstreams()
    settings = settings_for(ModelRoute("m", [upstream.url]), home=str(tmp_path))
    keys = KeyStore(state_url(settings))
    keys.create("app", "inference")
    keys.close()
    return settings


def served(app: Litestar) -> set[tuple[str, str]]:
    """Every (path, method) the app answers, as OpenAPI writes them; Litestar's automatic OPTIONS aside, and the
    console's pages (``include_in_schema=False``)."""
    return {
        (route.path_format, method.lower())
        for route in app.routes
        for method, entry in route.route_handler_map.items()
        if method not in ("OPTIONS", "HEAD")
        and (entry[0] if isinstance(entry, tuple) else entry).resolve_include_in_schema()
    }


def test_every_route_is_documented_and_nothing_else() -> None:
    built = app()
    assert not undocumented(built), f"describe these routes in gateway/edge/openapi.py: {undocumented(built)}"
    doc = document(built)
    described = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert described == served(built)
    assert {"/admin/adapters", "/admin/adapters/{alias}/promote", "/admin/keys/{key_id}", "/v1/models/{model}"} <= {
        path for path, _ in described
    }


def test_a_route_added_without_its_description_is_caught() -> None:
    @get("/admin/new-thing/{thing_id:str}")
    async def new_thing(thing_id: FromPath[str]) -> dict[str, str]:
        return {}

    built = app()
    built.register(new_thing)
    assert undocumented(built) == ["GET /admin/new-thing/{thing_id}"]
    # It still reaches the document (from the route table), so clients see it before anyone describes it.
    assert "get" in document(built)["paths"]["/admin/new-thing/{thing_id}"]


def test_the_document_is_valid_openapi_and_says_what_admin_routes_take() -> None:
    doc = document(app())
    validate(json.loads(json.dumps(doc)))  # as served: tuples (Struct defaults) become arrays
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    assert schemas["ErrorDetail"]["required"] == ["message", "type", "param", "code"]
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ChatCompletionRequest")
    assert {"400", "404", "413", "429", "503"} <= set(chat["responses"])
    register = doc["paths"]["/admin/adapters"]["post"]
    assert register["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/RegisterRequest")
    assert register["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/AdapterVersion")
    assert {"400", "401", "403"} <= set(register["responses"])
    assert register["security"] == [{}, {"bearerAuth": []}] and "security" not in doc["paths"]["/metrics"]["get"]
    promote = doc["paths"]["/admin/adapters/{alias}/promote"]["post"]
    assert promote["parameters"] == [{"name": "alias", "in": "path", "required": True, "schema": {"type": "string"}}]
    assert {"409", "502"} <= set(promote["responses"])
    runs = doc["paths"]["/admin/loop"]["get"]
    assert [(p["name"], p["in"]) for p in runs["parameters"]] == [("alias", "query")]
    assert "alias" in schemas["RegisterRequest"]["properties"] and "token" in schemas["CreatedKey"]["properties"]
    retrieve = doc["paths"]["/v1/models/{model}"]["get"]["responses"]
    assert retrieve["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Model")
    assert retrieve["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    responses = doc["paths"]["/v1/responses"]["post"]
    assert responses["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ResponsesRequest")
    assert "max_output_tokens" in schemas["ResponsesRequest"]["properties"]
    assert len({op["operationId"] for item in doc["paths"].values() for op in item.values()}) == sum(
        len(item) for item in doc["paths"].values()
    )


async def test_served_as_json_with_keys_on(tmp_path: Path, upstreams) -> None:
    settings = await keyed_settings(tmp_path, upstreams)
    async with running_gateway(settings) as client:
        response = await client.get("/openapi.json")
        expected = document(client.app)  # type: ignore[attr-defined]
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    assert json.loads(response.content) == json.loads(json.dumps(expected))


async def test_docs_page_and_its_assets(tmp_path: Path, upstreams) -> None:
    settings = await keyed_settings(tmp_path, upstreams)
    async with running_gateway(settings) as client:
        page = await client.get("/docs")
        assets = {
            name: await client.get(f"/docs/assets/{name}")
            for name in ("swagger-ui-bundle.js", "swagger-ui.css", "docs.js", "favicon-32x32.png")
        }
        missing = await client.get("/docs/assets/..%2Fdocs_routes.py")
        unknown = await client.get("/docs/assets/nope.js")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    linked = {src.split('"')[0] for src in page.text.split("/docs/assets/")[1:]}
    assert linked == {"swagger-ui.css", "favicon-32x32.png", "swagger-ui-bundle.js", "docs.js"}
    assert all(response.status_code == 200 for response in assets.values())
    assert assets["swagger-ui-bundle.js"].headers["content-type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in assets["swagger-ui-bundle.js"].content
    assert assets["swagger-ui.css"].headers["content-type"].startswith("text/css")
    assert assets["favicon-32x32.png"].content.startswith(b"\x89PNG")
    assert '"/openapi.json"' in assets["docs.js"].text
    assert missing.status_code == 404 and unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "route_not_found"


def test_the_vendored_files_and_their_licence_are_package_data() -> None:
    for path, _ in ASSETS.values():
        assert path.is_file(), path
    licence = (Path(openapi.__file__).parent / "static" / "swagger-ui" / "LICENSE").read_text()
    assert "Apache License" in licence
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"gateway.edge" = ["static/*", "static/swagger-ui/*"]' in pyproject
