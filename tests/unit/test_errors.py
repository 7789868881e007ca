"""The error catalog: complete, one scheme of codes, every code documented, the only place bodies are built,
and every domain refusal answered with the right catalog error."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import httpx
import pytest

from gateway import domain_errors, errors
from gateway.app import create_app
from gateway.config import ModelRoute
from gateway.edge.openapi import document
from tests.conftest import running_gateway, settings_for

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"


def test_catalog_holds_every_error_class_once_with_a_unique_code() -> None:
    defined = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.OpenAIError) and cls is not errors.OpenAIError and cls.__module__ == errors.__name__
    }
    assert set(errors.CATALOG) == defined and len(errors.CATALOG) == len(defined)
    codes = [cls.code for cls in errors.CATALOG if cls.code is not None]
    assert len(codes) == len(set(codes))
    assert [cls for cls in errors.CATALOG if cls.code is None] == [errors.BackendError]  # the backend's own code


@pytest.mark.parametrize("cls", [cls for cls in errors.CATALOG if cls.code is not None], ids=lambda cls: cls.__name__)
def test_codes_follow_the_scheme(cls: type[errors.OpenAIError]) -> None:
    if cls.code.endswith("_not_found"):
        assert cls.status_code == 404
    if cls.code.endswith("_conflict"):
        assert cls.status_code == 409
    if cls.code.startswith("invalid_"):
        assert cls.status_code in (400, 401)
    if cls.status_code < 500 and cls.status_code != 429:
        assert cls.type in ("invalid_request_error", "permission_error")
    assert cls.code.islower() and " " not in cls.code and cls.__doc__


def test_every_catalog_code_is_in_the_openapi_document() -> None:
    doc = document(create_app(settings_for(ModelRoute("m", ["http://127.0.0.1:9"]))))
    documented = {entry["const"] for entry in doc["components"]["schemas"]["ErrorCode"]["oneOf"]}
    assert documented == {cls.code for cls in errors.CATALOG if cls.code is not None}
    # Each error response lists exactly the codes of its status.
    by_status = errors.codes_by_status()
    for path in doc["paths"].values():
        for operation in path.values():
            for status, response in operation["responses"].items():
                if "x-error-codes" in response:
                    assert response["x-error-codes"] == by_status.get(int(status), []), (status, response)
    chat = doc["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert "model_not_found" in chat["404"]["x-error-codes"] and "content_filter" in chat["400"]["x-error-codes"]


def _hand_built_errors(tree: ast.AST) -> list[str]:
    """Error bodies built by hand (``OpenAIError(...)``, ``ErrorBody(...)``, ``ErrorDetail(...)``) and Litestar
    ``HTTPException``s raised directly (they would skip the catalog's codes)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("OpenAIError", "ErrorBody", "ErrorDetail"):
                found.append(f"{name}(...) at line {node.lineno}")
        if isinstance(node, ast.Raise) and node.exc is not None:
            raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = raised.attr if isinstance(raised, ast.Attribute) else getattr(raised, "id", "")
            if name.endswith("Exception") and name != "Exception":  # HTTPException, NotFoundException ...
                found.append(f"raise {name} at line {node.lineno}")
    return found


def test_no_error_is_built_by_hand_outside_the_catalog() -> None:
    offenders = {}
    for path in sorted(GATEWAY.rglob("*.py")):
        if path == GATEWAY / "errors.py":
            continue
        found = _hand_built_errors(ast.parse(path.read_text(), str(path)))
        if found:
            offenders[str(path.relative_to(GATEWAY.parent))] = found
    assert not offenders, f"raise a class of gateway/errors.py instead: {offenders}"


def test_the_scan_finds_what_it_looks_for() -> None:
    source = (
        "raise errors.OpenAIError(404, 'x')\n"
        "body = ErrorBody(ErrorDetail(message='x', type='y'))\n"
        "raise HTTPException(status_code=418)\n"
        "raise NotFoundException\n"
    )
    assert len(_hand_built_errors(ast.parse(source))) == 5


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        (domain_errors.NotFound("adapter", "x"), errors.AdapterNotFound),
        (domain_errors.NotFound("loop_run", "x"), errors.LoopRunNotFound),
        (domain_errors.Conflict("adapter", "x"), errors.AdapterConflict),
        (domain_errors.Conflict("loop_run", "x"), errors.LoopRunConflict),
        (domain_errors.Invalid("adapter", "x", field="weights"), errors.InvalidAdapter),
        (domain_errors.Invalid("base_model", "x", field="base_model"), errors.InvalidRequest),
        (domain_errors.Invalid("key", "x"), errors.InvalidRequest),
        (domain_errors.Unavailable("backend", "x"), errors.BackendUnavailable),
        (domain_errors.Unavailable("adapter", "x"), errors.AdapterCapacity),
        (domain_errors.BackendFailed("adapter", "x"), errors.AdapterLoadFailed),
        (domain_errors.NotFound("key", "x"), errors.InternalError),  # no mapping: a bug, answered as one
    ],
)
def test_domain_refusals_map_onto_the_catalog(
    refusal: domain_errors.DomainError, expected: type[errors.OpenAIError]
) -> None:
    error = errors.from_domain(refusal)
    assert type(error) is expected
    if expected is not errors.InternalError:
        assert error.message == "x" and error.param == refusal.field
    if expected.retry_after_s is not None:
        assert error.headers["retry-after"] == "1"


async def test_litestar_errors_carry_catalog_codes(upstreams) -> None:
    upstream = await upstreams()
    settings = settings_for(ModelRoute("m", [upstream.url]), max_body_bytes=1_000)
    async with running_gateway(settings) as client:
        missing = await client.get("/v1/nothing")
        wrong = await client.get("/v1/chat/completions")
        large = await client.post("/v1/chat/completions", content=b"x" * 2_000)
    for response, status, code in ((missing, 404, "route_not_found"), (wrong, 405, "method_not_allowed"),
                                   (large, 413, "request_too_large")):  # fmt: skip
        assert response.status_code == status and response.json()["error"]["code"] == code, response.text
    assert "POST" in wrong.headers["allow"]


def test_errors_encode_in_openai_shape() -> None:
    error = errors.RateLimited.of("key k (1 requests per minute)", 12.4)
    assert error.status_code == 429 and error.headers == {"retry-after": "12"}
    assert httpx.Response(429, content=error.encode()).json() == {
        "error": {
            "message": "Rate limit reached for key k (1 requests per minute); retry after 12 s.",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert errors.InvalidApiKey().headers == {"www-authenticate": "Bearer"}
