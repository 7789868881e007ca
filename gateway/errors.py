"""The error catalog: every error a client can see, one class each, carrying its HTTP status, OpenAI ``type``
and ``code``; the body is OpenAI's ``{"error": {"message", "type", "param", "code"}}``.

SDKs raise their usual exception types from these (``openai.NotFoundError`` for a 404 ...), and clients
branch on ``code``. The codes follow one scheme:

- ``<thing>_not_found`` (404): no such thing, or one this key may not see. ``model_not_found`` is OpenAI's.
- ``<thing>_conflict`` (409): the thing exists, but its current state forbids the change.
- ``invalid_<thing>`` (400): the input cannot work; ``invalid_request`` when no narrower code fits, and
  ``invalid_api_key`` (401) as OpenAI spells it.
- OpenAI's own codes where OpenAI has one: ``content_filter``, ``rate_limit_exceeded``.
- Failures of the gateway or its backends are named after what failed: ``backend_unavailable``,
  ``upstream_timeout``, ``adapter_load_failed``, ``internal_error`` ...

Only this module builds an error body. Domain code raises :mod:`gateway.domain_errors` instead, and
:func:`from_domain` maps those here; Litestar's own errors (unknown route, wrong method, body too large) are
mapped by :func:`http_exception_handler`. One class, :class:`BackendError`, has no code of its own: it passes
on a backend's error reply with the backend's status, type and code.
"""

from __future__ import annotations

import logging

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from gateway import domain_errors as domain

log = logging.getLogger(__name__)


class ErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class OpenAIError(Exception):
    """An error to return to the client as it is. Subclasses set the class attributes; instances the message
    (``default_message`` when the class has one), the request field at fault, and how long to wait."""

    status_code = 500
    type = "api_error"
    code: str | None = None
    default_message: str | None = None
    # Seconds a client should wait before retrying (``Retry-After``); None sends no header.
    retry_after_s: float | None = None
    fixed_headers: tuple[tuple[str, str], ...] = ()

    def __init__(
        self, message: str | None = None, *, param: str | None = None, retry_after_s: float | None = None
    ) -> None:
        text = message or self.default_message
        assert text is not None, f"{type(self).__name__} needs a message"
        super().__init__(text)
        self.message = text
        self.param = param
        self.headers = dict(self.fixed_headers)
        wait = self.retry_after_s if retry_after_s is None else retry_after_s
        if wait is not None:
            self.headers["retry-after"] = str(max(1, round(wait)))

    @property
    def body(self) -> ErrorBody:
        return ErrorBody(ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code))

    def encode(self) -> bytes:
        return msgspec.json.encode(self.body)


# 400


class InvalidRequest(OpenAIError):
    """A field is missing, of the wrong type or over a limit (``param`` names it)."""

    status_code = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidJson(OpenAIError):
    """The body is not a JSON object the gateway can read."""

    status_code = 400
    type = "invalid_request_error"
    code = "invalid_json"


class InvalidAdapter(OpenAIError):
    """The adapter directory is not one vLLM would load (checked before it is registered)."""

    status_code = 400
    type = "invalid_request_error"
    code = "invalid_adapter"


class ContentFiltered(OpenAIError):
    """A guard refused the prompt (or a feedback correction)."""

    status_code = 400
    type = "invalid_request_error"
    code = "content_filter"


# 401, 403


class InvalidApiKey(OpenAIError):
    """No key, or one that is unknown, revoked or expired."""

    status_code = 401
    type = "invalid_request_error"
    code = "invalid_api_key"
    default_message = "Incorrect or missing API key: send `Authorization: Bearer dg_...`."
    fixed_headers = (("www-authenticate", "Bearer"),)


class InsufficientScope(OpenAIError):
    """An inference key on an admin route."""

    status_code = 403
    type = "permission_error"
    code = "insufficient_scope"
    default_message = "This key may not use admin routes."


# 404


class ModelNotFound(OpenAIError):
    """No model, alias or version by that name that this key may use (or one that cannot do this)."""

    status_code = 404
    type = "invalid_request_error"
    code = "model_not_found"

    @classmethod
    def of(cls, model: str) -> ModelNotFound:
        return cls(f"The model `{model}` does not exist or you do not have access to it.", param="model")


class AdapterNotFound(OpenAIError):
    """No adapter alias or version by that name in the registry."""

    status_code = 404
    type = "invalid_request_error"
    code = "adapter_not_found"


class KeyNotFound(OpenAIError):
    """No active API key with that id."""

    status_code = 404
    type = "invalid_request_error"
    code = "key_not_found"


class RequestNotFound(OpenAIError):
    """No logged request with that id that this key made."""

    status_code = 404
    type = "invalid_request_error"
    code = "request_not_found"


class LoopRunNotFound(OpenAIError):
    """No closed-loop run with that id."""

    status_code = 404
    type = "invalid_request_error"
    code = "loop_run_not_found"


class TrainingJobNotFound(OpenAIError):
    """No training job with that id on this machine."""

    status_code = 404
    type = "invalid_request_error"
    code = "training_job_not_found"


class FeatureNotConfigured(OpenAIError):
    """The route belongs to a part this gateway's config leaves off (adapters, the loop, the request log)."""

    status_code = 404
    type = "invalid_request_error"
    code = "feature_not_configured"


class RouteNotFound(OpenAIError):
    """No route at that path."""

    status_code = 404
    type = "invalid_request_error"
    code = "route_not_found"


class MethodNotAllowed(OpenAIError):
    """The path exists, the method does not (``Allow`` lists those that do)."""

    status_code = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


# 409, 413


class AdapterConflict(OpenAIError):
    """The alias or version is in a stage that forbids the move (promoting an archived version ...)."""

    status_code = 409
    type = "invalid_request_error"
    code = "adapter_conflict"


class LoopRunConflict(OpenAIError):
    """The run is not in the state the action needs (approving a run that awaits nothing)."""

    status_code = 409
    type = "invalid_request_error"
    code = "loop_run_conflict"


class TrainingJobConflict(OpenAIError):
    """A job for this base model is already queued or running."""

    status_code = 409
    type = "invalid_request_error"
    code = "training_job_conflict"


class RequestBodyTimeout(OpenAIError):
    """The client did not send its body within ``body_read.timeout_s``, or sent it slower than
    ``body_read.min_bytes_per_s``."""

    status_code = 408
    type = "invalid_request_error"
    code = "request_timeout"

    @classmethod
    def of(cls, received: int, waited_s: float) -> RequestBodyTimeout:
        return cls(f"The request body was not sent in time ({received} bytes in {waited_s:.1f} s).")


class RequestTooLarge(OpenAIError):
    """The body is over the gateway's ``max_body_bytes``."""

    status_code = 413
    type = "invalid_request_error"
    code = "request_too_large"


# 429


class RateLimited(OpenAIError):
    """The key's requests per minute, tokens per minute or concurrency cap is reached (see ``Retry-After``)."""

    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    @classmethod
    def of(cls, what: str, retry_after_s: float) -> RateLimited:
        return cls(f"Rate limit reached for {what}; retry after {retry_after_s:.0f} s.", retry_after_s=retry_after_s)


# 5xx


class InternalError(OpenAIError):
    """A fault in the gateway itself (logged with its traceback)."""

    status_code = 500
    type = "api_error"
    code = "internal_error"
    default_message = "Internal gateway error."


class BadGateway(OpenAIError):
    """The backend answered something the gateway cannot pass on."""

    status_code = 502
    type = "api_error"
    code = "bad_gateway"


class AdapterLoadFailed(OpenAIError):
    """A backend refused to load the adapter version."""

    status_code = 502
    type = "api_error"
    code = "adapter_load_failed"


class BackendUnavailable(OpenAIError):
    """No backend serving the model is reachable (or all are behind an open circuit); see ``Retry-After``."""

    status_code = 503
    type = "service_unavailable_error"
    code = "backend_unavailable"
    retry_after_s = 1.0

    @classmethod
    def of(cls, model: str) -> BackendUnavailable:
        return cls(f"No backend serving `{model}` is reachable right now; retry shortly.")


class UpstreamDisconnected(OpenAIError):
    """The backend dropped this request's connection before its answer was complete. One dropped exchange
    says little about the backend (the request itself may have crashed it, or one connection broke): it
    counts toward the breaker, not as the backend being down."""

    status_code = 502
    type = "api_error"
    code = "upstream_disconnected"

    @classmethod
    def of(cls, model: str) -> UpstreamDisconnected:
        return cls(
            f"The backend serving `{model}` closed the connection before its answer was complete; "
            "the request may be retried."
        )


class ServerOverloaded(OpenAIError):
    """This worker holds its ``limits.max_in_flight`` requests already."""

    status_code = 503
    type = "service_unavailable_error"
    code = "server_overloaded"
    retry_after_s = 1.0

    @classmethod
    def of(cls, max_in_flight: int) -> ServerOverloaded:
        return cls(f"The gateway is at capacity ({max_in_flight} requests in flight); retry shortly.")


class AdapterCapacity(OpenAIError):
    """The backend holds its maximum of LoRA adapters, all in use."""

    status_code = 503
    type = "service_unavailable_error"
    code = "adapter_capacity"
    retry_after_s = 1.0


class GuardTimeout(OpenAIError):
    """The guards did not finish this request's text within the alias's ``guards.budget_s`` (and its
    ``guards.on_timeout`` is ``refuse``): the gateway is busy, or the request is heavy for its budget."""

    status_code = 503
    type = "service_unavailable_error"
    code = "guard_timeout"
    retry_after_s = 1.0

    @classmethod
    def of(cls, budget_s: float, waited_s: float) -> GuardTimeout:
        waited = min(waited_s, budget_s)
        return cls(
            f"The gateway's guards could not check this request within {budget_s:g} s ({waited:.1f} s of it "
            "waiting for a guard thread); retry shortly."
        )


class UpstreamTimeout(OpenAIError):
    """The backend did not answer within the read timeout."""

    status_code = 504
    type = "timeout_error"
    code = "upstream_timeout"

    @classmethod
    def of(cls, model: str) -> UpstreamTimeout:
        return cls(f"The backend serving `{model}` did not answer in time.")


class BackendError(OpenAIError):
    """An error reply of the backend (vLLM's 400 for a too-long prompt, say), passed on with its own status,
    type and code."""

    code = None

    def __init__(self, status: int, message: str, *, kind: str, code: str | None, param: str | None) -> None:
        super().__init__(message, param=param)
        self.status_code = status
        self.type = kind
        self.code = code


# Every error above: the OpenAPI document lists their codes, and a test keeps this tuple complete.
CATALOG: tuple[type[OpenAIError], ...] = (
    InvalidRequest,
    InvalidJson,
    InvalidAdapter,
    ContentFiltered,
    InvalidApiKey,
    InsufficientScope,
    ModelNotFound,
    AdapterNotFound,
    KeyNotFound,
    RequestNotFound,
    LoopRunNotFound,
    TrainingJobNotFound,
    FeatureNotConfigured,
    RouteNotFound,
    MethodNotAllowed,
    AdapterConflict,
    LoopRunConflict,
    TrainingJobConflict,
    RequestBodyTimeout,
    RequestTooLarge,
    RateLimited,
    InternalError,
    BadGateway,
    AdapterLoadFailed,
    UpstreamDisconnected,
    BackendUnavailable,
    ServerOverloaded,
    AdapterCapacity,
    GuardTimeout,
    UpstreamTimeout,
    BackendError,
)


def codes_by_status() -> dict[int, list[str]]:
    """The catalog's codes, grouped by the status that carries them (a backend's own codes aside)."""
    found: dict[int, list[str]] = {}
    for error in CATALOG:
        if error.code is not None:
            found.setdefault(error.status_code, []).append(error.code)
    return found


# Domain refusals: (kind, subject) to the catalog; an Invalid of another subject is a plain InvalidRequest.
_FROM_DOMAIN: dict[tuple[type[domain.DomainError], str], type[OpenAIError]] = {
    (domain.NotFound, "adapter"): AdapterNotFound,
    (domain.NotFound, "loop_run"): LoopRunNotFound,
    (domain.Conflict, "adapter"): AdapterConflict,
    (domain.Conflict, "loop_run"): LoopRunConflict,
    (domain.Invalid, "adapter"): InvalidAdapter,
    (domain.Unavailable, "backend"): BackendUnavailable,
    (domain.Unavailable, "adapter"): AdapterCapacity,
    (domain.BackendFailed, "adapter"): AdapterLoadFailed,
    (domain.Unavailable, "feature"): FeatureNotConfigured,
}


def from_domain(exc: domain.DomainError) -> OpenAIError:
    """The catalog error that answers a domain refusal."""
    error = _FROM_DOMAIN.get((type(exc), exc.subject))
    if error is None and isinstance(exc, domain.Invalid):
        error = InvalidRequest
    if error is None:
        log.error("no catalog error for %s(%r)", type(exc).__name__, exc.subject, exc_info=exc)
        return InternalError()
    return error(exc.message, param=exc.field)


# Exception handlers (registered on the app).


def openai_error_handler(_: Request, exc: OpenAIError) -> Response:
    return Response(exc.encode(), status_code=exc.status_code, media_type="application/json", headers=exc.headers)


def domain_error_handler(request: Request, exc: domain.DomainError) -> Response:
    return openai_error_handler(request, from_domain(exc))


_FROM_LITESTAR: dict[int, type[OpenAIError]] = {
    400: InvalidRequest,
    404: RouteNotFound,
    405: MethodNotAllowed,
    413: RequestTooLarge,
}


def http_exception_handler(_: Request, exc: HTTPException) -> Response:
    """Litestar's own errors (unknown route, wrong method, body too large) in OpenAI's shape."""
    status = exc.status_code
    # A status Litestar rarely raises keeps its number, under its family's code.
    error = (_FROM_LITESTAR.get(status) or (InternalError if status >= 500 else InvalidRequest))(str(exc.detail))
    # Keep Litestar's headers: a 405 must say which methods are allowed (RFC 9110).
    headers = {**error.headers, **(exc.headers or {})}
    return Response(error.encode(), status_code=status, media_type="application/json", headers=headers)


def internal_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return openai_error_handler(request, InternalError())
