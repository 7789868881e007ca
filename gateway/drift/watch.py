"""Prompt drift per model, off the request path: embed in batches, window, score, export, alert.

A request hands its prompt text to :meth:`DriftWatch.submit` (an O(1) append, dropped when the queue is
full); one background task embeds queued prompts in a worker thread and records them on the drift board in
the state database (``monitor.drift_board``), where the windows are the fleet's: every worker of every
replica adds to the same window, and the worker whose prompts fill it judges it, once. Every worker reads
the fleet's state back every ``refresh_s`` for its pages and its drift gauges (so each replica exports the
same values: dashboards take the max, never the sum).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import sqlalchemy as sa

from gateway.config import DriftWatchSettings
from monitor import metrics
from monitor.alerts import AlertSender, WebhookPayload, alert_payload
from monitor.database import create_engine

if TYPE_CHECKING:
    from gateway.adapters.models import Snapshot
    from monitor.drift import AliasState, DriftEvent, DriftMonitor, Window
    from monitor.embedder import Embedder
    from monitor.reference import ReferenceSet

log = logging.getLogger(__name__)


def reference_dir(home: Path, model: str) -> Path:
    return home / "references" / model


class DriftWatch:
    def __init__(self, config: DriftWatchSettings, embedder: Embedder, monitor: DriftMonitor, home: Path) -> None:
        self.config = config
        self.embedder = embedder
        self.monitor = monitor
        # The fleet's state and recent events as last read from the board (for pages and gauges).
        self.fleet: list[AliasState] = []
        self.events: list[DriftEvent] = []
        self.dropped = 0
        self._queue: deque[tuple[str, str, str]] = deque()
        self._ready = asyncio.Event()
        self._sender = AlertSender(config.alert_url) if config.alert_url else None
        # Also handed every payload in-process (the loop controller), whether or not a webhook is set.
        self.receivers: list[Callable[[WebhookPayload], Awaitable[object]]] = []
        # What each watched name is judged as: None for a base model, else the adapter version ("support@2").
        self._versions: dict[str, str | None] = dict.fromkeys(config.references)
        self._home = home
        self._forgetting: set[asyncio.Future[None]] = set()

    def watches(self, alias: str, version: str | None = None) -> bool:
        """Only traffic of the version whose reference is loaded counts (a canary's prompts do not)."""
        return alias in self._versions and self._versions[alias] == version

    def follow(self, snapshot: Snapshot) -> None:
        """Judge each adapter alias against its production version's reference, from the promotion on; the
        board's windows of the versions left behind are deleted in a thread."""
        from monitor.reference import ReferenceSet

        wanted = {}
        for alias in snapshot.aliases:
            version = snapshot.production(alias)
            if version is not None and version.reference_embeddings and alias not in self.config.references:
                wanted[alias] = version
        changed = [n for n, v in self._versions.items() if v is not None and n not in wanted]
        for name in changed:
            del self._versions[name]
            self.monitor.remove(name)
        for name, version in wanted.items():
            if self._versions.get(name) == version.name:
                continue
            try:
                reference = ReferenceSet.load(Path(version.reference_embeddings))  # type: ignore[arg-type]
            except (OSError, ValueError, msgspec.DecodeError) as exc:
                log.error("no drift reference for %s (%s): %s", version.name, version.reference_embeddings, exc)
                continue
            self.monitor.set_reference(
                name,
                msgspec.structs.replace(reference, meta=msgspec.structs.replace(reference.meta, version=version.name)),
            )
            self._versions[name] = version.name
            changed.append(name)
            log.info("drift of %s judged against %s (%d reference prompts)", name, version.name, reference.meta.count)
        if changed:
            task = asyncio.get_running_loop().run_in_executor(None, self._forget, changed)
            self._forgetting.add(task)
            task.add_done_callback(self._forgetting.discard)

    def _forget(self, aliases: list[str]) -> None:
        try:
            for alias in aliases:
                self.monitor.forget_other_versions(alias)
        except sa.exc.SQLAlchemyError as exc:  # left for the next promotion's follow to delete
            log.error("drift: old versions' windows of %s not deleted: %s", aliases, exc)

    def build_reference(self, dataset: str, alias: str) -> str:
        """Embed a training set's prompts into ``<home>/references/sha-<hash>`` (once per distinct file)."""
        digest = hashlib.sha256(Path(dataset).read_bytes()).hexdigest()
        directory = self._home / "references" / f"sha-{digest[:16]}"
        if not (directory / "reference.npy").is_file():
            embed_prompt_file(self.embedder, dataset, directory, alias=alias, version="")
        return str(directory)

    def submit(self, alias: str, request_id: str, text: str) -> None:
        """Queue one prompt; never blocks. A full queue drops (and counts) rather than slowing requests."""
        if len(self._queue) >= self.config.queue_size:
            self.dropped += 1
            return
        self._queue.append((alias, request_id, text))
        self._ready.set()

    def states(self) -> list[AliasState]:
        """The fleet's state as last read (at most ``refresh_s`` old); :meth:`refresh` reads it now."""
        return self.fleet

    async def refresh(self) -> list[AliasState]:
        """Read the fleet's state and recent events from the board, and export them as this worker's gauges."""
        self.fleet, self.events = await asyncio.to_thread(lambda: (self.monitor.states(), self.monitor.events()))
        for state in self.fleet:
            if state.last is not None:
                metrics.DRIFT_SCORE.labels(state.alias).set(state.last.score)
                metrics.DRIFT_THRESHOLD.labels(state.alias).set(state.last.threshold)
            metrics.DRIFT_CONFIRMED.labels(state.alias).set(1 if state.status == "drifting" else 0)
        return self.fleet

    async def run(self) -> None:
        """Embed and score until cancelled."""
        background = [asyncio.create_task(self._close_stale_windows()), asyncio.create_task(self._keep_reading())]
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._queue:
                    batch = [self._queue.popleft() for _ in range(min(self.config.batch_size, len(self._queue)))]
                    await self._process(batch)
        finally:
            for task in background:
                task.cancel()

    async def _process(self, batch: list[tuple[str, str, str]]) -> None:
        vectors = await asyncio.to_thread(self.embedder.embed, [text for _, _, text in batch])
        prompts = [(alias, request_id, vector) for (alias, request_id, _), vector in zip(batch, vectors, strict=True)]
        try:
            windows = await asyncio.to_thread(self.monitor.observe_many, prompts)
        except sa.exc.SQLAlchemyError as exc:  # the state database is away: these prompts are lost, not retried
            self.dropped += len(prompts)
            log.error("drift: %d prompts not recorded: %s", len(prompts), exc)
            return
        for window in windows:
            await self._check(window)

    async def _close_stale_windows(self) -> None:
        """Old windows with enough prompts, and windows a dead replica claimed, are judged here."""
        while True:
            await asyncio.sleep(self.config.stale_check_s)
            try:
                windows = await asyncio.to_thread(self.monitor.close_stale)
            except sa.exc.SQLAlchemyError as exc:
                log.error("drift: stale windows not claimed: %s", exc)
                continue
            for window in windows:
                await self._check(window)

    async def _keep_reading(self) -> None:
        while True:
            try:
                await self.refresh()
            except sa.exc.SQLAlchemyError as exc:
                log.error("drift: the fleet's state could not be read: %s", exc)
            await asyncio.sleep(self.config.refresh_s)

    async def _check(self, window: Window) -> None:
        try:
            result, event = await self.monitor.check(window)
        except sa.exc.SQLAlchemyError as exc:  # claimed and not judged: another replica takes it up later
            log.error("drift: window %d of %s not judged: %s", window.sequence, window.alias, exc)
            return
        metrics.DRIFT_WINDOWS.labels(window.alias, "drift" if result.over else "no_drift").inc()
        await self.refresh()
        if event is None:
            return
        log.warning(
            "drift %s for %s: score %.4g (threshold %.4g)", event.transition, event.alias, event.score, event.threshold
        )
        started = None
        if event.transition == "resolved":  # when the fleet confirmed it (maybe on another replica)
            fired = [e.at for e in self.events if e.alias == event.alias and e.transition == "fired"]
            started = fired[-1] if fired else None
        payload = alert_payload(event, started_at=started)
        for receiver in self.receivers:
            try:
                await receiver(payload)
            except Exception:
                log.exception("an in-process alert receiver failed for %s", event.alias)
        if self._sender is not None:
            await self._sender.send(payload)


def load_reference(home: Path, model: str, prompt_file: str, embedder: Embedder) -> ReferenceSet:
    """The model's reference embeddings: built from its prompt file once, then read back from disk."""
    from monitor.reference import ReferenceSet

    directory = reference_dir(home, model)
    try:
        cached = ReferenceSet.load(directory)
        if cached.meta.source == str(Path(prompt_file).resolve()):
            return cached
    except (OSError, ValueError, msgspec.DecodeError):
        pass
    return embed_prompt_file(embedder, prompt_file, directory, alias=model, version="base")


def embed_prompt_file(
    embedder: Embedder, prompt_file: str, directory: Path, *, alias: str, version: str
) -> ReferenceSet:
    """Embed a JSONL file's prompts and save them in ``directory`` as a reference set (its source: the file)."""
    from monitor.reference import build_reference, read_prompts

    source = str(Path(prompt_file).resolve())
    reference = build_reference(embedder, read_prompts(Path(prompt_file)), alias=alias, version=version, source=source)
    reference.save(directory)
    return reference


@asynccontextmanager
async def running_drift_watch(
    config: DriftWatchSettings, home: Path, adapters: bool, state_url: str
) -> AsyncIterator[DriftWatch | None]:
    """A started watcher when any model has a reference or adapters are watched; None (no embedder) otherwise.
    Its windows are on the drift board in the state database at ``state_url``, shared with every replica."""
    if not config.references and not (adapters and config.adapters):
        yield None
        return
    # Evidently, pandas and scikit-learn take seconds to import: only when a model is watched.
    from monitor.drift import DriftMonitor
    from monitor.embedder import Embedder, EmbedderSettings
    from monitor.embedder_export import DEFAULT_DIR_NAME, ensure_embedder

    directory = Path(config.embedder_dir) if config.embedder_dir else home / "models" / DEFAULT_DIR_NAME
    model_dir = await asyncio.to_thread(ensure_embedder, directory)
    # One intra-op thread: the gateway shares its cores with vLLM, and under load two threads were slower.
    embedder = Embedder(EmbedderSettings(model_dir=str(model_dir), threads=1))
    engine = create_engine(state_url)
    monitor = await asyncio.to_thread(DriftMonitor, config.detection, engine=engine)
    for model, prompt_file in config.references.items():
        reference = await asyncio.to_thread(load_reference, home, model, prompt_file, embedder)
        monitor.set_reference(model, reference)
    watch = DriftWatch(config, embedder, monitor, home)
    task = asyncio.create_task(watch.run())
    try:
        yield watch
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        engine.dispose()
