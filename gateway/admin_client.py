"""The one HTTP client every CLI command that talks to a running gateway goes through.

Where: ``--url``, else the config's ``host`` and ``port`` (a wildcard bind address is dialled as loopback).
Who: ``--api-key``, else ``DRIFTGATE_API_KEY``, sent as ``Authorization: Bearer``; once the gateway has any
key, every ``/admin`` route needs an admin-scoped one (``driftgate keys create --scope admin``).

A failure is one line on stderr, never a traceback, and an exit status scripts can rely on
(:class:`gateway.cli_options.ExitCode`):

====  ===========================================================================================
0     done
1     the gateway refused: it answered 4xx/5xx (``error: 401 authentication_error: ...``)
2     usage or configuration error (a bad option, an invalid config file or override)
3     no gateway answered at the URL (``error: no gateway at http://...: ConnectError ...``)
====  ===========================================================================================
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from gateway.cli_options import ExitCode, fail, settings_or_exit
from gateway.config import API_KEY_ENV, Settings

# Promotion waits until every backend has loaded the adapter: far longer than an ordinary admin call.
TIMEOUT = httpx.Timeout(180.0, connect=5.0)


class GatewayRefused(Exception):
    """The gateway answered with an error status (its body in OpenAI's error shape, or anything else)."""

    def __init__(self, status: int, type: str, message: str, code: str | None = None) -> None:
        super().__init__(status, type, message, code)
        self.status = status
        self.type = type
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return f"{self.status} {self.type}: {self.message}"


class GatewayUnreachable(Exception):
    """No HTTP answer at all: nothing listens there, a timeout, an unknown host."""


def base_url(settings: Settings) -> str:
    """Where the gateway these settings describe listens, as this machine dials it."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
    return f"http://[{host}]:{settings.port}" if ":" in host else f"http://{host}:{settings.port}"


class AdminClient:
    """Blocking calls to one gateway, each returning decoded JSON or raising one of the two errors above."""

    def __init__(self, url: str, api_key: str | None = None, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key or None
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT, transport=transport)

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, **params: str | None) -> Any:
        return self.call("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body=body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str | None] | None = None,
        accept: tuple[int, ...] = (),
    ) -> Any:
        """One request's JSON answer; statuses in ``accept`` (e.g. /readyz's 503) count as answers too."""
        reply = self.send(method, path, body=body, params=params, accept=accept)
        try:
            return reply.json()
        except ValueError as exc:
            raise GatewayRefused(reply.status_code, "invalid_response", f"{path} answered without JSON") from exc

    def send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str | None] | None = None,
        accept: tuple[int, ...] = (),
        bearer: str | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """The raw answer (for text such as /metrics); ``bearer`` replaces the key for this request only."""
        headers = {"authorization": f"Bearer {bearer}"} if bearer else None
        try:
            reply = self._http.request(
                method,
                path,
                json=body,
                params={k: v for k, v in (params or {}).items() if v is not None},
                headers=headers,
                timeout=TIMEOUT if timeout is None else timeout,
            )
        except httpx.HTTPError as exc:
            raise GatewayUnreachable(f"no gateway at {self.url}: {type(exc).__name__} {exc}".strip()) from exc
        if reply.status_code >= 400 and reply.status_code not in accept:
            raise self._refusal(reply)
        return reply

    def _refusal(self, reply: httpx.Response) -> GatewayRefused:
        try:
            error = reply.json()["error"]
            refused = GatewayRefused(reply.status_code, error["type"], error["message"], error.get("code"))
        except (ValueError, KeyError, TypeError):
            text = reply.text.strip()[:300] or reply.reason_phrase
            refused = GatewayRefused(reply.status_code, "http_error", text)
        if reply.status_code == 401 and self.api_key is None:
            refused.message += f" (no key sent: pass --api-key or set {API_KEY_ENV})"
        return refused


@contextmanager
def connect(config: Path | None, url: str | None, api_key: str | None) -> Iterator[AdminClient]:
    """A client for a command's ``--config``/``--url``/``--api-key``; inside the block, a refusal or an
    unreachable gateway ends the command with its one-line message and exit code."""
    client = AdminClient(url or base_url(settings_or_exit(config)), api_key)
    try:
        yield client
    except GatewayRefused as exc:
        fail(str(exc), ExitCode.REFUSED)
    except GatewayUnreachable as exc:
        fail(str(exc), ExitCode.UNREACHABLE)
    finally:
        client.close()
