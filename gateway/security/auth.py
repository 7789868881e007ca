"""Who is calling, and how much it may ask: the API key on a request, checked against the key store through a
short-lived cache, and the limits it runs under.

With no usable key in the store the gateway runs open (`serve`/`up` then refuse a non-loopback address unless
``auth.allow_open``, see :mod:`.bootstrap`); once a key exists every /v1 and /admin request needs one. A revoked
key stops working within ``cache_ttl_s``. /metrics needs the scrape token or an admin key once
``auth.metrics_token_file`` is set.

Limits, in the order a request meets them: the worker's in-flight cap (503, before the key is even looked
up), then per key the concurrency cap, requests per minute, and tokens per minute (429 with
``Retry-After``). Each inference request holds a :class:`Ticket` that is given back exactly once when its
answer ends, however it ends (finished, failed, streamed, or its client gone). The per-key limits are counted
in this worker's memory, or with ``limits.shared`` in the state database (:mod:`.shared_limits`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.errors import InsufficientScope, InvalidApiKey, RateLimited, ServerOverloaded
from gateway.security.bootstrap import read_token_file
from gateway.security.keys import ApiKey, InvalidKey, KeyStore
from gateway.security.settings import AuthSettings
from monitor import metrics

if TYPE_CHECKING:
    from gateway.security.shared_limits import SharedCounters

_log = logging.getLogger(__name__)
# What a shared call returns when the state database did not answer (the worker's own counters decide).
_UNANSWERED: Any = object()


# /metrics refuses with its own words: the scrape token is not an API key.
_SCRAPE_REFUSAL = (
    "Missing or incorrect token for /metrics: send `Authorization: Bearer <token>` with the scrape token "
    "(auth.metrics_token_file) or an admin key."
)


class Authenticator:
    """Checks bearer tokens; one per gateway worker."""

    def __init__(self, store: KeyStore, config: AuthSettings) -> None:
        self.store = store
        self._config = config
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._open_until = 0.0
        self._open = False
        self._scrape_token: bytes | None = None
        if config.metrics_token_file:  # checked at start by `serve`/`up`; read again by each worker
            self._scrape_token = read_token_file(config.metrics_token_file, "auth.metrics_token_file").encode()

    async def required(self) -> bool:
        """Whether keys are required (any usable key exists); re-checked every ``cache_ttl_s``."""
        now = time.monotonic()
        if now >= self._open_until:
            self._open = not await asyncio.to_thread(self.store.any_usable)
            self._open_until = now + self._config.cache_ttl_s
        return not self._open

    def forget(self, key_id: str | None = None) -> None:
        """After a key changed here: check again whether keys are required, and drop the cached tokens of
        ``key_id``, so this worker sees the change at once (the others within ``cache_ttl_s``)."""
        self._open_until = 0.0
        if key_id is not None:
            for token, (_, key) in list(self._cache.items()):
                if key is not None and key.id == key_id:
                    del self._cache[token]

    async def key_for(self, authorization: str | None) -> ApiKey | None:
        """The caller's key; None when the gateway runs open. Raises 401 for a missing or bad key."""
        if not await self.required():
            return None
        token = _bearer(authorization)
        key = None if token is None else await self._usable_key(token)
        if key is None:
            raise InvalidApiKey()
        return key

    async def check_scrape(self, authorization: str | None) -> None:
        """/metrics: open without ``auth.metrics_token_file``; else the scrape token or an admin key (401 for
        anything else, 403 for a key of another scope, as on /admin)."""
        if self._scrape_token is None:
            return
        token = _bearer(authorization)
        if token is None:
            raise InvalidApiKey(_SCRAPE_REFUSAL)
        if hmac.compare_digest(token.encode(), self._scrape_token):
            return
        key = await self._usable_key(token)
        if key is None:
            raise InvalidApiKey(_SCRAPE_REFUSAL)
        if key.scope != "admin":
            raise InsufficientScope()

    async def _usable_key(self, token: str) -> ApiKey | None:
        """The usable key ``token`` names, looked up through the cache; None for any other token."""
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is None or now - cached[0] > self._config.cache_ttl_s:
            try:
                key: ApiKey | None = await asyncio.to_thread(self.store.verify, token)
            except InvalidKey:
                key = None
            if len(self._cache) > 10_000:
                self._cache.clear()
            cached = self._cache[token] = (now, key)
        if cached[1] is None or not cached[1].usable(time.time()):
            return None
        return cached[1]


def _bearer(authorization: str | None) -> str | None:
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    return authorization[7:].strip()


class RateLimiter:
    """Per-worker limits: requests in flight, and per key concurrency, requests and tokens per minute.

    The per-minute limits are sliding 60 s windows (a deque per key and a clock read: a library would add a
    dependency for less than this). With :meth:`share` the per-key limits are counted in the state database
    instead (:mod:`gateway.security.shared_limits`), so they hold across workers and pods; only keys that
    have a limit cost a database statement, and the in-flight cap stays per worker.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        # Per key: [time, tokens] per request; the estimate is replaced by actual usage when the request ends.
        self._tokens: dict[str, deque[list[float]]] = {}
        self._active: dict[str, int] = {}
        self.in_flight = 0
        self.shared: SharedCounters | None = None
        self.shared_timeout_s = 1.0
        self.lease_s = 30.0
        self.wall_clock: Callable[[], float] = time.time
        self._leases: set[str] = set()  # this worker's concurrency leases, renewed until released
        self._warned_at = 0.0

    def share(self, counters: SharedCounters, timeout_s: float, lease_s: float) -> None:
        """Count per-key limits in ``counters`` (the state database) from now on."""
        self.shared, self.shared_timeout_s, self.lease_s = counters, timeout_s, lease_s

    def held_leases(self) -> list[str]:
        return list(self._leases)

    async def _shared_call(self, op: str, call: Callable[..., Any], *args: Any) -> Any:
        """``call`` off the event loop; :data:`_UNANSWERED` when the store fails or is slower than
        ``limits.shared_timeout_s``.

        Failing open (to this worker's own counters) rather than closed: the limits share capacity fairly, they
        are not what keeps callers out (keys are), and a store outage that refused every limited key would turn
        a degraded database into an inference outage. The worker's counters still bound each key to its limit
        per worker meanwhile; the warning (once a minute) and ``driftgate_shared_limit_failures_total`` say so.
        """
        try:
            return await asyncio.wait_for(asyncio.to_thread(call, *args), self.shared_timeout_s)
        except Exception as exc:  # noqa: BLE001 - any store failure (timeouts included) fails open, see above
            metrics.SHARED_LIMIT_FAILURES.labels(op).inc()
            now = time.monotonic()
            if now - self._warned_at > 60:
                self._warned_at = now
                _log.warning(
                    "shared limits: the state database did not answer (%s: %r); per-worker limits apply", op, exc
                )
            return _UNANSWERED

    def _in_background(self, op: str, call: Callable[..., Any], *args: Any) -> None:
        """A shared write whose result nobody waits for (releases, usage corrections)."""

        def run() -> None:
            try:
                call(*args)
            except Exception as exc:  # noqa: BLE001 - a lost release lapses with its lease; logged and counted
                metrics.SHARED_LIMIT_FAILURES.labels(op).inc()
                _log.warning("shared limits: %s failed: %r", op, exc)

        try:
            asyncio.get_running_loop().run_in_executor(None, run)
        except RuntimeError:  # no event loop (a test, or shutdown): do it here
            run()

    async def check_shared(self, key: ApiKey) -> None:
        """Requests per minute, counted in the state database when shared (else as :meth:`check`)."""
        if self.shared is None or key.rpm is None:
            return self.check(key)
        wait = await self._shared_call("rpm", self.shared.admit, key.id, "rpm", 1, key.rpm, self.wall_clock())
        if wait is _UNANSWERED:
            return self.check(key)
        if wait is not None:
            metrics.REJECTED_REQUESTS.labels("rpm").inc()
            raise RateLimited.of(f"key {key.id} ({key.rpm} requests per minute)", wait)
        return None

    async def _admit_shared(self, ticket: Ticket, key: ApiKey) -> None:
        assert self.shared is not None
        if key.max_concurrent is not None:
            lease = uuid.uuid4().hex
            got = await self._shared_call(
                "concurrency", self.shared.acquire, key.id, lease, key.max_concurrent, self.wall_clock(), self.lease_s
            )
            if got is _UNANSWERED:
                self._in_background("release", self.shared.release, [lease])  # in case it landed after all
                return self._admit(ticket, key)
            if not got:
                metrics.REJECTED_REQUESTS.labels("concurrency").inc()
                raise RateLimited.of(f"key {key.id} ({key.max_concurrent} concurrent requests)", 1)
            ticket.lease = lease  # given back when the request ends, even if the rpm check below refuses it
            self._leases.add(lease)
        await self.check_shared(key)
        ticket.key = key
        return None

    async def _reserve_shared(self, ticket: Ticket, key: ApiKey, estimate: int) -> None:
        assert self.shared is not None
        now = self.wall_clock()
        wait = await self._shared_call("tpm", self.shared.admit, key.id, "tpm", estimate, key.tpm, now)
        if wait is _UNANSWERED:
            return self._reserve(ticket, key, estimate)
        if wait is not None:
            metrics.REJECTED_REQUESTS.labels("tpm").inc()
            raise RateLimited.of(
                f"key {key.id} ({key.tpm} tokens per minute; this request needs about {estimate})", wait
            )
        ticket.shared_tokens = (int(now // 60), estimate)
        return None

    def check(self, key: ApiKey) -> None:
        """Requests per minute: count this request or refuse it."""
        if key.rpm is None:
            return
        now = self._clock()
        window = self._seen.setdefault(key.id, deque())
        while window and now - window[0] >= 60:
            window.popleft()
        if len(window) >= key.rpm:
            metrics.REJECTED_REQUESTS.labels("rpm").inc()
            raise RateLimited.of(f"key {key.id} ({key.rpm} requests per minute)", 60 - (now - window[0]))
        window.append(now)

    def enter(self, max_in_flight: int | None) -> Ticket:
        """Take a place among the requests in flight, or refuse at once (no queue: memory stays bounded)."""
        if max_in_flight is not None and self.in_flight >= max_in_flight:
            metrics.REJECTED_REQUESTS.labels("overloaded").inc()
            raise ServerOverloaded.of(max_in_flight)
        self.in_flight += 1
        metrics.IN_FLIGHT.inc()
        return Ticket(self)

    def _admit(self, ticket: Ticket, key: ApiKey) -> None:
        active = self._active.get(key.id, 0)
        if key.max_concurrent is not None and active >= key.max_concurrent:
            metrics.REJECTED_REQUESTS.labels("concurrency").inc()
            raise RateLimited.of(f"key {key.id} ({key.max_concurrent} concurrent requests)", 1)
        self.check(key)
        self._active[key.id] = active + 1
        ticket.key = key
        ticket.counted = True

    def _reserve(self, ticket: Ticket, key: ApiKey, estimate: int) -> None:
        if key.tpm is None:
            return
        now = self._clock()
        window = self._tokens.setdefault(key.id, deque())
        while window and now - window[0][0] >= 60:
            window.popleft()
        used = sum(entry[1] for entry in window)
        if used + estimate > key.tpm:
            metrics.REJECTED_REQUESTS.labels("tpm").inc()
            what = f"key {key.id} ({key.tpm} tokens per minute; this request needs about {estimate})"
            if estimate > key.tpm:
                raise RateLimited.of(what, 60)
            # Wait until enough of the window's tokens have aged out.
            excess, wait = used + estimate - key.tpm, 60.0
            for spent_at, tokens in window:
                excess -= tokens
                if excess <= 0:
                    wait = 60 - (now - spent_at)
                    break
            raise RateLimited.of(what, wait)
        ticket.tokens = [now, estimate]
        window.append(ticket.tokens)

    def _release(self, ticket: Ticket, used_tokens: int | None) -> None:
        self.in_flight -= 1
        metrics.IN_FLIGHT.dec()
        if ticket.counted:
            remaining = self._active[ticket.key.id] - 1
            if remaining:
                self._active[ticket.key.id] = remaining
            else:
                del self._active[ticket.key.id]
        if ticket.tokens is not None and used_tokens is not None:
            ticket.tokens[1] = used_tokens
        if ticket.lease is not None:
            self._leases.discard(ticket.lease)
            self._in_background("release", self.shared.release, [ticket.lease])
        if ticket.shared_tokens is not None and used_tokens is not None:
            bucket, estimate = ticket.shared_tokens
            self._in_background("tpm", self.shared.adjust, ticket.key.id, "tpm", bucket, used_tokens - estimate)


class Ticket:
    """One inference request's hold on the limits; :meth:`release` it when the answer ends."""

    __slots__ = ("_limiter", "key", "counted", "tokens", "lease", "shared_tokens", "prompt_estimate", "_released")

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self.key: ApiKey | None = None
        self.counted = False  # in this worker's per-key concurrency count
        self.tokens: list[float] | None = None  # this request's entry in its key's tokens-per-minute window
        self.lease: str | None = None  # its shared concurrency lease
        self.shared_tokens: tuple[int, int] | None = None  # (minute, estimate) counted in the shared tokens
        self.prompt_estimate = 0
        self._released = False

    async def admit(self, key: ApiKey) -> None:
        """The key's concurrency cap and requests-per-minute limit (429 beyond either); in the state database
        when limits are shared, else in this worker."""
        if self._limiter.shared is None:
            self._limiter._admit(self, key)
        else:
            await self._limiter._admit_shared(self, key)

    async def reserve(self, estimate: int) -> None:
        """Count ``estimate`` tokens against the key's tokens per minute (429 if they do not fit); in the state
        database when limits are shared, else in this worker."""
        if self.key is None or self.key.tpm is None:
            return
        if self._limiter.shared is None:
            self._limiter._reserve(self, self.key, estimate)
        else:
            await self._limiter._reserve_shared(self, self.key, estimate)

    def release(self, used_tokens: int | None = None) -> None:
        """End the hold; ``used_tokens`` (the backend's usage) replaces the estimate when known."""
        if not self._released:
            self._released = True
            self._limiter._release(self, used_tokens)
