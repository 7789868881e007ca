"""A deadline on reading a request's body, and a minimum rate.

granian drops a client that is slow to send its headers, but not one that sends its body a byte at a
time; such a connection holds a place among the requests in flight (and a key's concurrency) for as long as
it likes, so a few hundred of them fill ``limits.max_in_flight``. No ASGI server option covers this, hence
this small middleware: it times the ``http.request`` messages a handler awaits, and a body not complete by
``body_timeout_s`` after the headers, or arriving slower than ``min_body_rate`` bytes per second after the
first ``body_grace_s``, ends the request with an OpenAI-shaped ``408 request_timeout``.
"""

from __future__ import annotations

import asyncio
import time

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gateway.config import BodyReadSettings
from gateway.errors import RequestBodyTimeout


class BodyDeadline:
    """ASGI middleware: ``receive`` with the body read's deadline, for HTTP requests."""

    def __init__(self, app: ASGIApp, settings: BodyReadSettings) -> None:
        self._app = app
        self._settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        await self._app(scope, _TimedReceive(receive, self._settings), send)


class _TimedReceive:
    """One request's ``receive``: timed until the last body message has come, then as it is."""

    __slots__ = ("_receive", "_settings", "_started", "_received", "_complete")

    def __init__(self, receive: Receive, settings: BodyReadSettings) -> None:
        self._receive = receive
        self._settings = settings
        self._started = time.monotonic()
        self._received = 0
        self._complete = False

    async def __call__(self) -> Message:
        if self._complete:
            return await self._receive()
        settings = self._settings
        allowed = self._started + settings.timeout_s
        if settings.min_bytes_per_s:
            allowed = min(allowed, self._started + settings.grace_s + self._received / settings.min_bytes_per_s)
        try:
            message = await asyncio.wait_for(self._receive(), timeout=max(allowed - time.monotonic(), 0.0))
        except TimeoutError as exc:
            raise RequestBodyTimeout.of(self._received, time.monotonic() - self._started) from exc
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            self._complete = not message.get("more_body", False)
        else:
            self._complete = True
        return message
