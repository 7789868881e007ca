"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with the right status.

Every failure a client can see goes through :class:`OpenAIError`, so SDKs raise their usual exception
types (``openai.NotFoundError``, ``openai.APIStatusError`` ...) with a readable message.
"""

from __future__ import annotations

import logging

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

log = logging.getLogger(__name__)


class ErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class OpenAIError(Exception):
    """An error to return to the client as-is."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(ErrorDetail(message=message, type=type, param=param, code=code))
        self.headers = headers or {}

    def encode(self) -> bytes:
        return msgspec.json.encode(self.body)


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


def model_not_found(model: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def backend_unavailable(model: str) -> OpenAIError:
    return OpenAIError(
        503,
        f"No backend serving `{model}` is reachable right now; retry shortly.",
        type="service_unavailable_error",
        code="backend_unavailable",
        headers={"retry-after": "1"},
    )


def upstream_timeout(model: str) -> OpenAIError:
    return OpenAIError(
        504,
        f"The backend serving `{model}` did not answer in time.",
        type="timeout_error",
        code="upstream_timeout",
    )


def bad_gateway(message: str) -> OpenAIError:
    return OpenAIError(502, message, type="api_error", code="bad_gateway")


def openai_error_handler(_: Request, exc: OpenAIError) -> Response:
    return Response(exc.encode(), status_code=exc.status, media_type="application/json", headers=exc.headers)


_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def http_exception_handler(_: Request, exc: HTTPException) -> Response:
    """Litestar's own errors (unknown route, wrong method, body too large) in OpenAI's shape."""
    status = exc.status_code
    body = ErrorBody(ErrorDetail(message=str(exc.detail), type=_STATUS_TYPES.get(status, "api_error"), code=None))
    # Keep Litestar's headers: a 405 must say which methods are allowed (RFC 9110).
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json", headers=exc.headers)


def internal_error_handler(_: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    body = ErrorBody(ErrorDetail(message="Internal gateway error.", type="api_error", code="internal_error"))
    return Response(msgspec.json.encode(body), status_code=500, media_type="application/json")
