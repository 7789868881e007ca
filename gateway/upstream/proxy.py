"""Forwarding one request to a vLLM replica: choice, retry, timeouts and streaming pass-through.

A request is retried on another replica only when it never reached the first one (the connection
could not be made): generation is not idempotent, so anything that may have run on a backend is not
sent twice.

Every exchange tells the backend's circuit breaker how it went: connect failures, timeouts and dropped
connections count against it, a completely read answer (whatever its status: the server is alive)
closes it. Replicas whose breaker is open are skipped; with none left the caller gets a fast 503 whose
``Retry-After`` is the time until the first breaker half-opens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack

import aiohttp
import msgspec

from gateway.config import TimeoutSettings
from gateway.errors import (
    BackendError,
    BackendUnavailable,
    BadGateway,
    OpenAIError,
    UpstreamDisconnected,
    UpstreamTimeout,
)
from gateway.upstream.backends import Backend, BackendPool
from monitor import metrics

log = logging.getLogger(__name__)

# Connection failures that prove the request never left the gateway.
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


class UpstreamResponse(msgspec.Struct):
    status: int
    body: bytes
    # Seconds spent waiting on the backend, for the overhead figure.
    upstream_s: float
    backend: str


class _Exchange:
    """One request's hold on a backend: the open response and the lease to give back."""

    __slots__ = ("response", "backend", "waited_s", "_lease")

    def __init__(self, response: aiohttp.ClientResponse, backend: Backend, lease: ExitStack, waited_s: float):
        self.response = response
        self.backend = backend
        self.waited_s = waited_s
        self._lease = lease

    def finish(self, *, completed: bool) -> None:
        """Return the connection to the pool if the body was read to the end, else drop it."""
        if completed:
            self.backend.breaker.succeeded()
            self.response.release()
        else:
            self.response.close()
        self._lease.close()

    async def read(self, model: str) -> bytes:
        """The whole body, then the backend given back; a timeout or a dropped connection counts against it."""
        completed = False
        try:
            body = await self.response.read()
            completed = True
            return body
        except TimeoutError as exc:
            _failed(self.backend, "timeout")
            raise UpstreamTimeout.of(model) from exc
        except aiohttp.ClientError as exc:
            _failed(self.backend, "disconnect")
            raise UpstreamDisconnected.of(model) from exc
        finally:
            self.finish(completed=completed)


class UpstreamStream:
    """An open streaming response: iterate it once; it gives the backend back when done or dropped."""

    def __init__(self, exchange: _Exchange, model: str) -> None:
        self._exchange = exchange
        self._model = model

    @property
    def waited_s(self) -> float:
        return self._exchange.waited_s

    @property
    def backend(self) -> str:
        return self._exchange.backend.url

    async def __aiter__(self) -> AsyncIterator[bytes]:
        completed = False
        try:
            async for chunk in self._exchange.response.content.iter_any():
                yield chunk
            completed = True
        except TimeoutError:
            log.warning("stream from %s stalled past the read timeout", self._exchange.backend.url)
            _failed(self._exchange.backend, "timeout")
            yield _sse_error(UpstreamTimeout.of(self._model))
        except aiohttp.ClientError:
            _failed(self._exchange.backend, "disconnect")
            yield _sse_error(UpstreamDisconnected.of(self._model))
        finally:
            # Runs on client disconnect too (the generator is closed): closing the connection makes
            # vLLM abort the generation.
            self._exchange.finish(completed=completed)


def _sse_error(error: OpenAIError) -> bytes:
    """An error event in the stream: what OpenAI sends when a stream fails after it started."""
    return b"data: " + error.encode() + b"\n\n"


class Upstream:
    """Sends request bodies to the replicas of a model."""

    def __init__(self, pool: BackendPool, session: aiohttp.ClientSession, timeouts: TimeoutSettings) -> None:
        self._pool = pool
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect_s, sock_read=timeouts.read_s)

    async def post(self, model: str, path: str, body: bytes, headers: dict[str, str]) -> UpstreamResponse:
        """Forward a non-streaming request and return the backend's status and body."""
        exchange = await self._open(model, path, body, headers)
        started = time.perf_counter()
        payload = await exchange.read(model)
        waited = exchange.waited_s + time.perf_counter() - started
        return UpstreamResponse(exchange.response.status, payload, waited, exchange.backend.url)

    async def stream(self, model: str, path: str, body: bytes, headers: dict[str, str]) -> UpstreamStream:
        """Forward a streaming request; errors before the first byte raise, later ones become events."""
        exchange = await self._open(model, path, body, headers)
        if exchange.response.status == 200:
            return UpstreamStream(exchange, model)
        raise upstream_error(exchange.response.status, await exchange.read(model))

    async def _open(self, model: str, path: str, body: bytes, headers: dict[str, str]) -> _Exchange:
        previous: Backend | None = None
        for backend in self._pool.candidates(model):
            probe = backend.breaker.acquire()
            if probe is False:  # half-open and another request is already its probe
                continue
            if previous is not None:
                metrics.UPSTREAM_RETRIES.labels(previous.url).inc()
            previous = backend
            lease = ExitStack()
            if probe:
                lease.callback(backend.breaker.end_probe)
            lease.enter_context(backend.lease())
            started = time.perf_counter()
            try:
                response = await self._session.post(
                    backend.url + path, data=body, headers=headers, timeout=self._timeout
                )
            except _NOT_SENT as exc:
                lease.close()
                backend.mark_down(f"connect failed: {exc!r}")
                _failed(backend, "connect")
                continue
            except TimeoutError as exc:
                lease.close()
                _failed(backend, "timeout")
                raise UpstreamTimeout.of(model) from exc
            except aiohttp.ClientError as exc:  # sent, then dropped: this exchange failed, not the backend
                lease.close()
                _failed(backend, "disconnect")
                raise UpstreamDisconnected.of(model) from exc
            except BaseException:
                lease.close()
                raise
            return _Exchange(response, backend, lease, time.perf_counter() - started)
        retry_after = self._pool.retry_after_s(model)
        if retry_after is not None and previous is None:
            metrics.REJECTED_REQUESTS.labels("circuit_open").inc()
            raise circuit_open(model, retry_after)
        raise BackendUnavailable.of(model)


def _failed(backend: Backend, kind: str) -> None:
    """A connect failure, timeout or dropped connection: counted, and held against the backend's breaker."""
    metrics.UPSTREAM_ERRORS.labels(backend.url, kind).inc()
    backend.breaker.failed(kind)


def circuit_open(model: str, retry_after_s: float) -> BackendUnavailable:
    """Every replica of ``model`` is behind an open breaker (or busy probing): fail now, not after a timeout."""
    return BackendUnavailable(
        f"Every backend serving `{model}` is failing and paused (circuit open); retry after {retry_after_s:.0f} s.",
        retry_after_s=retry_after_s,
    )


def upstream_error(status: int, payload: bytes) -> OpenAIError:
    """Re-shape a backend's error reply as an OpenAI error, keeping its status and message."""
    try:
        decoded = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        decoded = None
    detail = decoded.get("error", decoded) if isinstance(decoded, dict) else None
    if isinstance(detail, dict):
        return BackendError(
            status,
            str(detail.get("message") or f"backend answered {status}"),
            kind=str(detail.get("type") or "invalid_request_error"),
            code=None if detail.get("code") is None else str(detail.get("code")),
            param=detail.get("param"),
        )
    text = payload[:500].decode("utf-8", "replace")
    return BadGateway(f"backend answered {status}: {text}")
