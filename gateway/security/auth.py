"""Who is calling: the API key on a request, checked against the key store through a short-lived cache.

With no usable key in the store the gateway runs open, and `serve`/`up` then bind to localhost only; once a
key exists every /v1 and /admin request needs one. A revoked key stops working within ``cache_ttl_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import msgspec

from gateway.errors import OpenAIError
from gateway.security.keys import ApiKey, InvalidKey, KeyStore


class AuthConfig(msgspec.Struct, forbid_unknown_fields=True):
    # How long a checked key is trusted before the store is asked again (revocation delay).
    cache_ttl_s: float = 5.0


def unauthorized() -> OpenAIError:
    return OpenAIError(
        401,
        "Incorrect or missing API key: send `Authorization: Bearer dg_...`.",
        type="invalid_request_error",
        code="invalid_api_key",
        headers={"www-authenticate": "Bearer"},
    )


def admin_only() -> OpenAIError:
    return OpenAIError(403, "This key may not use admin routes.", type="permission_error", code="insufficient_scope")


def rate_limited(what: str, retry_after_s: float) -> OpenAIError:
    return OpenAIError(
        429,
        f"Rate limit reached for {what}; retry after {retry_after_s:.0f} s.",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"retry-after": str(max(1, round(retry_after_s)))},
    )


class Authenticator:
    """Checks bearer tokens; one per gateway worker."""

    def __init__(self, store: KeyStore, config: AuthConfig) -> None:
        self._store = store
        self._config = config
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._open_until = 0.0
        self._open = False

    async def required(self) -> bool:
        """Whether keys are required (any usable key exists); re-checked every ``cache_ttl_s``."""
        now = time.monotonic()
        if now >= self._open_until:
            self._open = not await asyncio.to_thread(self._store.any_usable)
            self._open_until = now + self._config.cache_ttl_s
        return not self._open

    async def key_for(self, authorization: str | None) -> ApiKey | None:
        """The caller's key; None when the gateway runs open. Raises 401 for a missing or bad key."""
        if not await self.required():
            return None
        if not authorization or not authorization.lower().startswith("bearer "):
            raise unauthorized()
        token = authorization[7:].strip()
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is None or now - cached[0] > self._config.cache_ttl_s:
            try:
                key: ApiKey | None = await asyncio.to_thread(self._store.verify, token)
            except InvalidKey:
                key = None
            if len(self._cache) > 10_000:
                self._cache.clear()
            cached = self._cache[token] = (now, key)
        if cached[1] is None or not cached[1].usable(time.time()):
            raise unauthorized()
        return cached[1]


class RateLimiter:
    """Requests per minute per key over a sliding 60 s window, in this worker's memory.

    Hand-written because it is a deque per key and a clock read: a library would add a dependency for less
    than this. With several workers each enforces the limit on its own share of the traffic.
    """

    def __init__(self) -> None:
        self._seen: dict[str, deque[float]] = {}

    def check(self, key: ApiKey) -> None:
        if key.rpm is None:
            return
        now = time.monotonic()
        window = self._seen.setdefault(key.id, deque())
        while window and now - window[0] >= 60:
            window.popleft()
        if len(window) >= key.rpm:
            raise rate_limited(f"key {key.id} ({key.rpm} requests per minute)", 60 - (now - window[0]))
        window.append(now)
