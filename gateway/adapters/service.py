"""One gateway worker's adapter machinery: registry, resolver and reconciler, and the moves between versions.

A move (promote, canary, rollback) loads what the alias will need on every backend first, then changes the
registry in one transaction and swaps this worker's snapshot; the other workers swap theirs at their next
revision poll. The version an alias leaves stays loaded until no worker has anything in flight on it (and
the other workers have had time to notice), then the reconciler unloads it. A rollback only needs the
weights it returns to, so it works when the current version's weights are broken.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import aiohttp
import msgspec

from gateway.adapters.inflight import InflightBoard
from gateway.adapters.models import AdapterVersion, RegisterRequest, Snapshot
from gateway.adapters.reconciler import Reconciler
from gateway.adapters.registry import Registry, conflict, not_found
from gateway.adapters.resolver import Resolver
from gateway.adapters.validation import check_adapter
from gateway.config import ModelRoute, Settings, state_url
from gateway.domain_errors import DomainError, Invalid
from gateway.upstream.backends import BackendPool
from monitor import metrics

log = logging.getLogger(__name__)


def registry_url(settings: Settings) -> str:
    assert settings.adapters is not None
    return state_url(settings)


class Adapters:
    def __init__(
        self,
        settings: Settings,
        pool: BackendPool,
        registry: Registry,
        session: aiohttp.ClientSession,
        board: InflightBoard,
    ):
        self.settings = settings
        self.registry = registry
        self.resolver = Resolver()
        self.reconciler = Reconciler(pool, settings, session, lambda: self.resolver.snapshot, board)
        self._pool = pool
        # One move at a time in this worker; the registry's transaction serialises workers.
        self._moving = asyncio.Lock()
        # Called with each new snapshot (drift detection follows production versions this way).
        self.listeners: list[Callable[[Snapshot], None]] = []
        # Embeds a dataset's prompts into a reference directory (set when drift detection runs).
        self.reference_builder: Callable[[str, str], str] | None = None

    @property
    def snapshot(self) -> Snapshot:
        return self.resolver.snapshot

    async def resolve(self, model: str, caller: str) -> tuple[AdapterVersion, Callable[[], None]] | None:
        """The version that answers ``model``, loaded where it will run, and the call that ends its in-flight count;
        None when no alias or version is called ``model``."""
        found = self.resolver.resolve(model, caller)
        if found is None:
            return None
        version, pinned = found
        # Counted in flight before it is loaded: a cold version just loaded must not be the next load's victim.
        leave = self.reconciler.enter(version, pinned=pinned)
        if not self.reconciler.holds(version):
            started = time.perf_counter()
            try:
                await self.reconciler.ensure(version)
            except BaseException:
                leave()
                raise
            metrics.ADAPTER_LOAD_WAIT_SECONDS.observe(time.perf_counter() - started)
        return version, leave

    def route(self, base_model: str) -> ModelRoute:
        route = self._pool.route(base_model)
        if route is None:
            raise Invalid("base_model", f"`{base_model}` is not a configured model.", field="base_model")
        return route

    # Moves: each returns the snapshot it produced.

    async def register(self, request: RegisterRequest) -> AdapterVersion:
        route = self.route(request.base_model)
        max_rank = route.max_lora_rank or self.settings.embedded.max_lora_rank
        await asyncio.to_thread(check_adapter, request.weights, route, max_rank)
        if request.dataset is not None:
            if not Path(request.dataset).is_file():
                raise Invalid("dataset", f"dataset {request.dataset} is not a readable file.", field="dataset")
            if request.reference_embeddings is None and self.reference_builder is not None:
                reference = await asyncio.to_thread(self.reference_builder, request.dataset, request.alias)
                request = msgspec.structs.replace(request, reference_embeddings=reference)
        version = await asyncio.to_thread(self.registry.register, request)
        await self.refresh()
        return version

    async def promote(self, alias: str, number: int) -> Snapshot:
        return await self._move(alias, number, "promote")

    async def rollback(self, alias: str) -> Snapshot:
        """End a canary if one runs; otherwise return production to the version before the last promotion."""
        current = self.snapshot.aliases.get(alias)
        if current is None:
            current = (await self.refresh()).aliases.get(alias)
        if current is None:
            raise not_found(f"The adapter alias `{alias}`")
        if current.canary is not None:
            return await self._move(alias, current.canary, "end_canary")
        if current.previous is None:
            raise conflict(f"`{alias}` has no earlier production version to roll back to.")
        return await self._move(alias, current.previous, "rollback")

    async def canary(self, alias: str, number: int, share: float) -> Snapshot:
        return await self._move(alias, number, "canary", share)

    async def retire(self, alias: str) -> Snapshot:
        return await self._move(alias, 0, "retire")

    async def _move(self, alias: str, number: int, kind: str, share: float = 0.0) -> Snapshot:
        async with self._moving:
            before = await self.refresh()
            target = before.version(alias, number)
            try:
                if target is not None and kind in ("promote", "rollback", "canary"):
                    if kind != "rollback" and target.stage == "archived":
                        raise conflict(f"{target.name} is archived; it cannot be promoted or put on canary.")
                    await self.reconciler.ensure(target)
                after = await asyncio.to_thread(self._write, alias, number, kind, share)
            except DomainError:
                metrics.ADAPTER_FAILURES.labels(alias if alias in before.aliases else "unknown", kind).inc()
                raise
            self._swap(after)
            metrics.ADAPTER_SWAPS.labels(alias, kind).inc()
            log.info("%s %s: revision %d", kind, alias, after.revision)
            return after

    def _write(self, alias: str, number: int, kind: str, share: float) -> Snapshot:
        if kind == "canary":
            return self.registry.set_canary(alias, number, share)
        if kind == "end_canary":
            return self.registry.end_canary(alias)
        if kind == "retire":
            return self.registry.retire(alias)
        return self.registry.promote(alias, number, rollback=kind == "rollback")

    # Following the registry.

    async def refresh(self) -> Snapshot:
        self._swap(await asyncio.to_thread(self.registry.snapshot))
        return self.snapshot

    def _swap(self, snapshot: Snapshot) -> None:
        before = {version.name for version in self.snapshot.served()}
        if self.resolver.update(snapshot):
            self.reconciler.left(before - {version.name for version in snapshot.served()})
            for listener in self.listeners:
                try:
                    listener(snapshot)
                except Exception:
                    log.exception("a registry listener failed on revision %d", snapshot.revision)

    async def follow(self) -> None:
        """Poll the registry's revision and swap in a new snapshot when another worker changed it."""
        while True:
            await asyncio.sleep(self.settings.adapters.poll_s)  # type: ignore[union-attr]
            try:
                if await asyncio.to_thread(self.registry.revision) != self.snapshot.revision:
                    await self.refresh()
            except Exception:
                log.exception("cannot read the adapter registry; keeping revision %d", self.snapshot.revision)


@asynccontextmanager
async def running_adapters(
    settings: Settings, pool: BackendPool, session: aiohttp.ClientSession
) -> AsyncIterator[Adapters | None]:
    if settings.adapters is None:
        yield None
        return
    registry = await asyncio.to_thread(Registry, registry_url(settings))
    # Rows of a worker that died stop counting after ten missed publications (20 s at the default).
    board = await asyncio.to_thread(InflightBoard, registry.engine, stale_s=10 * settings.adapters.reconcile_s)
    adapters = Adapters(settings, pool, registry, session, board)
    await adapters.refresh()
    tasks = [
        asyncio.create_task(adapters.follow()),
        asyncio.create_task(adapters.reconciler.run()),
        asyncio.create_task(adapters.reconciler.share()),
    ]
    try:
        yield adapters
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task
        registry.close()
