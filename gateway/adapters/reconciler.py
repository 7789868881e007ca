"""Make every healthy vLLM backend hold the adapters the registry needs, within its ``max_loras`` slots.

Needed on a backend = the production and canary versions of every alias whose base model it serves, the
versions an alias left moments ago (other gateway workers may still send them traffic until their next
registry poll), and pinned versions used recently. What the registry knows but nobody needs is unloaded
once no worker has a request in flight on it (this worker's count, and the others' on the shared
:class:`InflightBoard`); adapters loaded by someone else are left alone and take none of this registry's slots.

More adapters may be needed than a backend has slots (dozens of aliases on ``--max-loras 4``): the background
pass only fills free slots, hottest first, and never evicts; a request for a version that is not resident
loads it on demand, evicting a version with nothing in flight: pinned and left versions first, then other aliases'
production and canary versions, least recently used first. When
every resident version is busy, the request waits up to ``load_wait_s`` for one to finish instead of failing.
Residency, loads, evictions and waits are metrics (``driftgate_adapters_resident``,
``driftgate_adapter_loads_total``, ``driftgate_adapter_evictions_total``, ``driftgate_adapter_load_wait_seconds``).

What a backend holds is read from its ``GET /v1/models`` (LoRA cards carry a ``parent``) whenever it is
checked, so a backend that restarted or joined late is filled again on the next pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress

import aiohttp

from gateway.adapters.inflight import InflightBoard
from gateway.adapters.models import AdapterVersion, Snapshot
from gateway.config import AdaptersSettings, Settings
from gateway.domain_errors import BackendFailed, DomainError, Unavailable
from gateway.upstream.backends import Backend, BackendPool
from monitor import metrics

log = logging.getLogger(__name__)


def load_failed(version: AdapterVersion, backend: str, detail: str) -> BackendFailed:
    return BackendFailed("adapter", f"Backend {backend} could not load `{version.name}`: {detail}")


def no_room(version: AdapterVersion, backend: str) -> Unavailable:
    return Unavailable(
        "adapter",
        f"Backend {backend} holds its maximum of LoRA adapters, all still in use after waiting; "
        f"`{version.name}` cannot be loaded now. Retry shortly.",
    )


class Reconciler:
    def __init__(
        self,
        pool: BackendPool,
        settings: Settings,
        session: aiohttp.ClientSession,
        snapshot: Callable[[], Snapshot],
        board: InflightBoard,
    ) -> None:
        assert settings.adapters is not None
        self.config: AdaptersSettings = settings.adapters
        self._pool = pool
        self._session = session
        self._snapshot = snapshot
        self._embedded = settings.embedded
        self._timeout = aiohttp.ClientTimeout(total=self.config.load_timeout_s)
        # Per backend URL: the LoRA names it holds, as last read or changed by us; absent = not read yet.
        self.loaded: dict[str, set[str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.inflight: Counter[str] = Counter()
        self.last_used: dict[str, float] = {}
        self._pinned_at: dict[str, float] = {}
        self._left_at: dict[str, float] = {}
        self._wake = asyncio.Event()
        # Set whenever a version's last request in this worker ends: a load waiting for room looks again.
        self._freed = asyncio.Event()
        self.board = board
        # Versions other workers have requests running on, and when that was read; None: not read yet.
        self._elsewhere: set[str] | None = None
        self._elsewhere_at = 0.0

    # The request path: cheap checks first, a load only when a backend lacks the version.

    def holds(self, version: AdapterVersion) -> bool:
        backends = self._pool.candidates(version.base_model)
        return bool(backends) and all(version.name in self.loaded.get(b.url, ()) for b in backends)

    def enter(self, version: AdapterVersion, *, pinned: bool) -> Callable[[], None]:
        """Count one request in flight on ``version``; call the returned function (once) when it is done."""
        name = version.name
        self.inflight[name] += 1
        now = time.monotonic()
        self.last_used[name] = now
        if pinned:
            self._pinned_at[name] = now
        done = False

        def leave() -> None:
            nonlocal done
            if not done:
                done = True
                self.inflight[name] -= 1
                if self.inflight[name] <= 0:
                    del self.inflight[name]
                    self._freed.set()

        return leave

    async def ensure(self, version: AdapterVersion) -> None:
        """Load ``version`` on every healthy backend of its base model that lacks it; raise if one cannot."""
        backends = self._pool.candidates(version.base_model)
        if not backends:
            raise Unavailable("backend", f"No healthy backend serves `{version.base_model}` right now; retry shortly.")
        await asyncio.gather(*(self._load(backend, version, reason="request") for backend in backends))

    def left(self, names: set[str]) -> None:
        """Versions an alias just stopped serving: keep them a little longer for workers that have not noticed."""
        now = time.monotonic()
        for name in names:
            self._left_at[name] = now
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def busy(self, name: str) -> bool:
        """Whether any worker may have a request running on ``name``: if the others' counts are unknown or
        too old to trust (the state database is unreachable), assume they do."""
        if self.inflight.get(name):
            return True
        fresh = time.monotonic() - self._elsewhere_at <= 2 * self.config.reconcile_s
        return self._elsewhere is None or not fresh or name in self._elsewhere

    async def share(self) -> None:
        """Publish this worker's in-flight counts and read the others' every ``reconcile_s``, until cancelled."""
        try:
            while True:
                try:
                    self._elsewhere = await asyncio.to_thread(self.board.exchange, dict(self.inflight))
                    self._elsewhere_at = time.monotonic()
                except Exception as exc:
                    log.warning("cannot share in-flight counts (nothing is unloaded meanwhile): %r", exc)
                await asyncio.sleep(self.config.reconcile_s)
        finally:
            try:
                await asyncio.to_thread(self.board.withdraw)
            except Exception as exc:  # the rows expire on their own after the board's stale_s
                log.warning("cannot withdraw in-flight counts: %r", exc)

    async def run(self) -> None:
        """Reconcile every ``reconcile_s`` or as soon as :meth:`wake` is called, until cancelled."""
        while True:
            try:
                await self.reconcile()
            except Exception:
                log.exception("adapter reconciliation failed; retrying")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.config.reconcile_s)
            except TimeoutError:
                pass

    async def reconcile(self) -> None:
        snapshot = self._snapshot()
        await asyncio.gather(*(self._reconcile_backend(backend, snapshot) for backend in self._pool.backends))

    # One backend.

    def budget(self, backend: Backend) -> int:
        limits = [route.max_loras for route in self._pool.routes_on(backend)]
        known = [limit for limit in limits if limit is not None]
        return min(known) if known else self._embedded.max_loras

    def needed(self, backend: Backend, snapshot: Snapshot) -> set[str]:
        served_here = {route.name for route in self._pool.routes_on(backend)}
        now = time.monotonic()
        # Another worker may start a request on a version it has not yet seen leave (up to poll_s late); its
        # count reaches the board at its next share (reconcile_s) and this worker reads it at its own next one.
        keep_left = 2 * self.config.poll_s + 2 * self.config.reconcile_s
        names = {version.name for version in snapshot.served() if version.base_model in served_here}
        for name, since in list(self._left_at.items()):
            if now - since > keep_left:
                del self._left_at[name]
            else:
                names.add(name)
        for name, since in list(self._pinned_at.items()):
            if now - since > self.config.pinned_idle_s:
                del self._pinned_at[name]
            else:
                names.add(name)
        return {
            name for name in names if name in snapshot.versions and snapshot.versions[name].base_model in served_here
        }

    async def _reconcile_backend(self, backend: Backend, snapshot: Snapshot) -> None:
        if not backend.healthy:
            # Whatever it held may be gone when it comes back (a restart forgets runtime-loaded adapters).
            self.loaded.pop(backend.url, None)
            return
        needed = self.needed(backend, snapshot)
        async with self._lock(backend):
            await self._read(backend)
            for name in sorted(self.loaded[backend.url] - needed):
                if name in snapshot.versions and not self.busy(name):
                    await self._unload(backend, snapshot.versions[name])
        # Free slots only (evicting is the request path's call, on demand): production and canary first, then
        # the most recently used, so a backend that restarted gets its hot adapters back first.
        served = {version.name for version in snapshot.served()}
        for name in sorted(needed, key=lambda name: (name not in served, -self.last_used.get(name, 0.0))):
            held = self.loaded.get(backend.url, set())
            if name in held:
                continue
            if len(held & snapshot.versions.keys()) >= self.budget(backend):
                break
            try:
                await self._load(backend, snapshot.versions[name], reason="reconcile")
            except DomainError as exc:
                log.warning("%s", exc)
        metrics.ADAPTERS_RESIDENT.labels(backend.url).set(len(self.loaded.get(backend.url, ())))

    def _lock(self, backend: Backend) -> asyncio.Lock:
        return self._locks.setdefault(backend.url, asyncio.Lock())

    async def _read(self, backend: Backend) -> None:
        try:
            async with self._session.get(f"{backend.url}/v1/models", timeout=self._timeout) as response:
                cards = (await response.json())["data"] if response.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as exc:
            log.warning("cannot list adapters on %s: %r", backend.url, exc)
            return
        if cards is not None:
            self.loaded[backend.url] = {card["id"] for card in cards if card.get("parent")}

    async def _load(self, backend: Backend, version: AdapterVersion, *, reason: str) -> None:
        async with self._lock(backend):
            if backend.url not in self.loaded:
                await self._read(backend)
            if not await self._make_room(backend, version):
                return  # loaded by another request while this one waited for room
            held = self.loaded.setdefault(backend.url, set())
            started = time.perf_counter()
            body = {"lora_name": version.name, "lora_path": version.weights}
            try:
                async with self._session.post(
                    f"{backend.url}/v1/load_lora_adapter", json=body, timeout=self._timeout
                ) as response:
                    status, text = response.status, await response.text()
            except (TimeoutError, aiohttp.ClientError) as exc:
                metrics.ADAPTER_FAILURES.labels(version.alias, "load").inc()
                raise load_failed(version, backend.url, repr(exc)) from exc
            if status != 200 and "already been loaded" not in text:
                metrics.ADAPTER_FAILURES.labels(version.alias, "load").inc()
                raise load_failed(version, backend.url, f"{status} {text[:300]}")
            metrics.ADAPTER_LOAD_SECONDS.observe(time.perf_counter() - started)
            metrics.ADAPTER_LOADS.labels(reason).inc()
            held.add(version.name)
            metrics.ADAPTERS_RESIDENT.labels(backend.url).set(len(held))
            log.info("loaded %s on %s", version.name, backend.url)

    async def _make_room(self, backend: Backend, version: AdapterVersion) -> bool:
        """Unload least recently used versions with nothing in flight until ``version`` fits; False if it is
        already there. Called under the backend's lock; while every resident version is busy, it waits (up to
        ``load_wait_s``) with the lock released, so requests queued for versions already loaded get through and
        finish (holding the lock there would deadlock on their in-flight counts)."""
        deadline = time.monotonic() + self.config.load_wait_s
        while True:
            held = self.loaded.setdefault(backend.url, set())
            if version.name in held:
                return False
            snapshot = self._snapshot()
            if len(held & snapshot.versions.keys()) < self.budget(backend):
                return True
            idle = [n for n in held if n in snapshot.versions and not self.busy(n)]
            if idle:
                # Pinned and left versions go before any alias's production or canary, least recently used first.
                served = {v.name for v in snapshot.served()}
                victim = min(idle, key=lambda n: (n in served, self.last_used.get(n, 0.0)))
                self._pinned_at.pop(victim, None)
                await self._unload(backend, snapshot.versions[victim])
                metrics.ADAPTER_EVICTIONS.inc()
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise no_room(version, backend.url)
            self._freed.clear()
            lock = self._lock(backend)
            lock.release()
            try:
                # Another worker's requests end without setting this worker's event: look again at least every
                # reconcile_s, when the shared in-flight counts are refreshed.
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), min(left, self.config.reconcile_s))
            finally:
                await lock.acquire()

    async def _unload(self, backend: Backend, version: AdapterVersion) -> None:
        # Out of the held set before the call: a request arriving meanwhile must load it again, not be sent to
        # a backend that is dropping it.
        held = self.loaded.get(backend.url, set())
        held.discard(version.name)
        try:
            async with self._session.post(
                f"{backend.url}/v1/unload_lora_adapter", json={"lora_name": version.name}, timeout=self._timeout
            ) as response:
                ok = response.status == 200 or response.status == 404
        except (TimeoutError, aiohttp.ClientError):
            ok = False
        if not ok:
            held.add(version.name)
            metrics.ADAPTER_FAILURES.labels(version.alias, "unload").inc()
            log.warning("could not unload %s from %s", version.name, backend.url)
            return
        log.info("unloaded %s from %s", version.name, backend.url)
