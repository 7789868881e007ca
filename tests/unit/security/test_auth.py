"""Bearer-token checks and per-key request limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import OpenAIError
from gateway.security.auth import Authenticator, AuthSettings, RateLimiter
from gateway.security.keys import KeyStore


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}")
    yield store
    store.close()


async def test_open_until_the_first_key_then_closed(store: KeyStore) -> None:
    auth = Authenticator(store, AuthSettings(cache_ttl_s=0))
    assert await auth.key_for(None) is None  # no keys: open (and bound to localhost by the CLI)
    key, token = store.create("app", "inference")
    assert await auth.key_for(f"Bearer {token}") == key
    for header in (None, "Bearer nope", f"Basic {token}", f"Bearer {token}x"):
        with pytest.raises(OpenAIError) as caught:
            await auth.key_for(header)
        assert caught.value.status_code == 401 and caught.value.body.error.code == "invalid_api_key"


async def test_a_revoked_key_stops_working_after_the_cache_ttl(store: KeyStore) -> None:
    auth = Authenticator(store, AuthSettings(cache_ttl_s=0))
    key, token = store.create("app", "inference")
    store.create("other", "admin")  # keeps the gateway closed after the revocation
    await auth.key_for(f"Bearer {token}")
    store.revoke(key.id)
    with pytest.raises(OpenAIError):
        await auth.key_for(f"Bearer {token}")


def test_requests_per_minute_are_limited_per_key(store: KeyStore) -> None:
    limiter = RateLimiter()
    limited, _ = store.create("small", "inference", rpm=3)
    unlimited, _ = store.create("big", "inference")
    for _ in range(3):
        limiter.check(limited)
    with pytest.raises(OpenAIError) as caught:
        limiter.check(limited)
    assert caught.value.status_code == 429 and 1 <= int(caught.value.headers["retry-after"]) <= 60
    for _ in range(100):
        limiter.check(unlimited)
