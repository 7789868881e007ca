"""``driftgate drift report``: the running gateway's drift state, and an Evidently report for a person to read."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.table import Table

from gateway.config import Settings

console = Console(stderr=True)


def show_state(settings: Settings) -> None:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{host}:{settings.port}/admin/drift"
    try:
        report = httpx.get(url, timeout=5).json()
    except httpx.HTTPError as exc:
        console.print(f"[yellow]![/] no running gateway at {url} ({exc.__class__.__name__}); showing no live state")
        return
    table = Table(title=f"drift at {url}")
    for column in ("model", "status", "windows", "last score", "threshold", "pending", "note"):
        table.add_column(column)
    for alias in report["aliases"]:
        last = alias.get("last") or {}
        table.add_row(
            alias["alias"],
            alias["status"],
            str(alias["windows_checked"]),
            f"{last['score']:.4g}" if last else "-",
            f"{last['threshold']:.4g}" if last else "-",
            f"{alias['pending']} (verdict from {alias['min_window_size']})",
            alias.get("note", ""),
        )
    console.print(table)
    for event in report["events"]:
        console.print(f"{event['transition']}: {event['alias']} score {event['score']:.4g} > {event['threshold']:.4g}")


def write_report(settings: Settings, model: str, output: Path, limit: int) -> None:
    """Recent logged prompts of ``model`` against its reference, as Evidently's HTML report."""
    from gateway.drift.watch import reference_dir
    from gateway.edge.request_log import store_url
    from monitor.drift_report import write_html_report
    from monitor.embedder import Embedder, EmbedderConfig
    from monitor.embedder_export import DEFAULT_DIR_NAME, ensure_embedder
    from monitor.reference import ReferenceSet
    from monitor.request_log_store import RequestLogStore

    try:
        reference = ReferenceSet.load(reference_dir(Path(settings.home), model))
    except OSError as exc:
        console.print(f"[red]error:[/] {model} has no reference yet (drift.references in the config): {exc}")
        raise typer.Exit(1) from exc
    if settings.request_log is None:
        console.print("[red]error:[/] the request log is off, so there are no production prompts to compare")
        raise typer.Exit(1)
    store = RequestLogStore(store_url(settings))
    records = [r for r in store.recent(model, limit=limit) if r.prompt]
    store.close()
    texts = [text for text in (_user_text(record.route, record.prompt) for record in records) if text.strip()]
    minimum = settings.drift.detection.min_window_size
    if len(texts) < minimum:
        console.print(f"no verdict: {len(texts)} logged prompts for {model}, fewer than the minimum window ({minimum})")
        if not texts:
            raise typer.Exit(1)
    directory = (
        Path(settings.drift.embedder_dir)
        if settings.drift.embedder_dir
        else (Path(settings.home) / "models" / DEFAULT_DIR_NAME)
    )
    embedder = Embedder(EmbedderConfig(model_dir=str(ensure_embedder(directory, console=console))))
    with console.status(f"Embedding {len(texts)} prompts and writing the report"):
        current = embedder.embed(texts)
        path = write_html_report(current, reference.embeddings, output, settings.drift.detection.method, title=model)
    console.print(f"[green]✓[/] {path} ({len(texts)} recent prompts against {reference.meta.count} reference prompts)")


def _user_text(route: str, logged_prompt: str) -> str:
    """What drift judged a logged request by: the log keeps chat messages as JSON, prompts as they came."""
    from gateway.edge.guarding import user_words

    if route == "/v1/chat/completions":
        return user_words(route, {"messages": json.loads(logged_prompt)})
    return logged_prompt


def report_command(settings: Settings, model: str | None, output: Path, limit: int) -> None:
    show_state(settings)
    if model:
        write_report(settings, model, output, limit)
