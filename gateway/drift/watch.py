"""Prompt drift per model, off the request path: embed in batches, window, score, export, alert.

A request hands its prompt text to :meth:`DriftWatch.submit` (an O(1) append, dropped when the queue is
full); one background task embeds queued prompts in a worker thread and feeds the per-alias windows of
``monitor.drift``. Each worker process watches the traffic it serves: run one worker (the embedded
default) or judge drift from the shared request log when several share the load.
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

from gateway.config import DriftWatchSettings
from monitor import metrics
from monitor.alerts import AlertSender, WebhookPayload, alert_payload

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
        self.events: deque[DriftEvent] = deque(maxlen=100)
        self.dropped = 0
        self._queue: deque[tuple[str, str, str]] = deque()
        self._ready = asyncio.Event()
        self._sender = AlertSender(config.alert_url) if config.alert_url else None
        # Also handed every payload in-process (the loop controller), whether or not a webhook is set.
        self.receivers: list[Callable[[WebhookPayload], Awaitable[object]]] = []
        self._fired_at: dict[str, float] = {}
        # What each watched name is judged as: None for a base model, else the adapter version ("support@2").
        self._versions: dict[str, str | None] = dict.fromkeys(config.references)
        self._home = home

    def watches(self, alias: str, version: str | None = None) -> bool:
        """Only traffic of the version whose reference is loaded counts (a canary's prompts do not)."""
        return alias in self._versions and self._versions[alias] == version

    def follow(self, snapshot: Snapshot) -> None:
        """Judge each adapter alias against its production version's reference, from the promotion on."""
        from monitor.reference import ReferenceSet

        wanted = {}
        for alias in snapshot.aliases:
            version = snapshot.production(alias)
            if version is not None and version.reference_embeddings and alias not in self.config.references:
                wanted[alias] = version
        for name in [n for n, v in self._versions.items() if v is not None and n not in wanted]:
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
            log.info("drift of %s judged against %s (%d reference prompts)", name, version.name, reference.meta.count)

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
        return self.monitor.states()

    async def run(self) -> None:
        """Embed and score until cancelled."""
        stale = asyncio.create_task(self._close_stale_windows())
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._queue:
                    batch = [self._queue.popleft() for _ in range(min(self.config.batch_size, len(self._queue)))]
                    await self._process(batch)
        finally:
            stale.cancel()

    async def _process(self, batch: list[tuple[str, str, str]]) -> None:
        vectors = await asyncio.to_thread(self.embedder.embed, [text for _, _, text in batch])
        for (alias, request_id, _), vector in zip(batch, vectors, strict=True):
            window = self.monitor.observe(alias, request_id, vector)
            if window is not None:
                await self._check(window)

    async def _close_stale_windows(self) -> None:
        while True:
            await asyncio.sleep(self.config.stale_check_s)
            for window in self.monitor.close_stale():
                await self._check(window)

    async def _check(self, window: Window) -> None:
        event = await self.monitor.check(window)
        state = self.monitor.state(window.alias)
        if state.last is not None:
            metrics.DRIFT_SCORE.labels(window.alias).set(state.last.score)
            metrics.DRIFT_THRESHOLD.labels(window.alias).set(state.last.threshold)
            metrics.DRIFT_WINDOWS.labels(window.alias, "drift" if state.last.over else "no_drift").inc()
        metrics.DRIFT_CONFIRMED.labels(window.alias).set(1 if state.status == "drifting" else 0)
        if event is None:
            return
        log.warning(
            "drift %s for %s: score %.4g (threshold %.4g)", event.transition, event.alias, event.score, event.threshold
        )
        self.events.append(event)
        if event.transition == "fired":
            self._fired_at[event.alias] = event.at
        started = self._fired_at.get(event.alias) if event.transition == "resolved" else None
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
    config: DriftWatchSettings, home: Path, adapters: bool
) -> AsyncIterator[DriftWatch | None]:
    """A started watcher when any model has a reference or adapters are watched; None (no embedder) otherwise."""
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
    monitor = DriftMonitor(config.detection)
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
