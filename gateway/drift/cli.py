"""``driftgate drift report``: the running gateway's drift state, and for one model or adapter alias a verdict
on its recent logged prompts plus an Evidently report for a person to read.

The verdict is computed here, on the gateway's host (it reads the request log), with the gateway's own
detection settings: the configured method and thresholds, against the same reference the gateway judges by.
A base model's reference is the one built from ``drift.references``; an adapter alias's is its production
version's (``references/sha-<hash>`` of its registered dataset, named in the registry), and only the prompts
that version answered count, as in the gateway's own windows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
from rich.table import Table

from gateway.admin_client import AdminClient, GatewayRefused
from gateway.cli_options import ExitCode, console, fail
from gateway.config import Settings


def show_state(client: AdminClient) -> None:
    report = client.get("/admin/drift")
    table = Table(title=f"drift at {client.url}")
    for column in ("model", "judged as", "status", "windows", "last score", "threshold", "pending", "note"):
        table.add_column(column)
    for alias in report["aliases"]:
        last = alias.get("last") or {}
        table.add_row(
            alias["alias"],
            alias.get("version") or "-",
            alias["status"],
            str(alias["windows_checked"]),
            f"{last['score']:.4g}" if last else "-",
            f"{last['threshold']:.4g}" if last else "-",
            f"{alias['pending']} (verdict from {alias['min_window_size']})",
            alias.get("note", ""),
        )
    console.print(table)
    if not report["aliases"]:
        console.print("no model is watched: set drift.references, or drift.adapters with a registered dataset")
    for event in report["events"]:
        console.print(f"{event['transition']}: {event['alias']} score {event['score']:.4g} > {event['threshold']:.4g}")


class Judged(msgspec.Struct):
    """What a model's recent prompts are compared with: a reference directory, and the version it belongs to."""

    reference: Path
    # The adapter version whose traffic counts (None: a base model, all of its traffic counts).
    version: str | None


def judged(settings: Settings, client: AdminClient, model: str) -> Judged:
    """Where the gateway keeps ``model``'s reference: a configured base model's, or an alias's production
    version's (the registry names the directory that registration built)."""
    from gateway.drift.watch import reference_dir

    if model in settings.drift.references:
        return Judged(reference_dir(Path(settings.home), model), None)
    try:
        alias: dict[str, Any] = client.get(f"/admin/adapters/{model}")
    except GatewayRefused as exc:
        if exc.status != 404:
            raise
        fail(f"{model} is neither in drift.references nor an adapter alias ({exc.message})", ExitCode.REFUSED)
    production = alias["production"]
    version = next((v for v in alias["versions"] if f"{v['alias']}@{v['number']}" == production), None)
    if version is None:
        fail(f"{model} has no production version yet: promote one first", ExitCode.REFUSED)
    if not version.get("reference_embeddings"):
        fail(f"{production} has no drift reference: register it with --dataset", ExitCode.REFUSED)
    return Judged(Path(version["reference_embeddings"]), production)


def write_report(settings: Settings, model: str, target: Judged, output: Path, limit: int) -> None:
    """Recent logged prompts of ``model`` against its reference: a verdict, and Evidently's HTML report."""
    from gateway.edge.request_log import store_url
    from monitor.drift_methods import drift_score, evidently_method, sample_rows
    from monitor.drift_report import write_html_report
    from monitor.embedder import Embedder, EmbedderSettings
    from monitor.embedder_export import DEFAULT_DIR_NAME, ensure_embedder
    from monitor.reference import ReferenceSet
    from monitor.request_log_store import RequestLogStore

    try:
        reference = ReferenceSet.load(target.reference)
    except (OSError, ValueError) as exc:
        fail(f"cannot read {model}'s reference at {target.reference}: {exc}", ExitCode.REFUSED)
    if settings.request_log is None:
        fail("the request log is off, so there are no production prompts to compare", ExitCode.USAGE)
    store = RequestLogStore(store_url(settings))
    records = [r for r in store.recent(model, limit=limit) if r.prompt and r.version == target.version]
    store.close()
    texts = [text for text in (_user_text(record.route, record.prompt) for record in records) if text.strip()]
    detection = settings.drift.detection
    whose = target.version or model
    if len(texts) < detection.min_window_size:
        console.print(
            f"no verdict: {len(texts)} logged prompts answered by {whose}, "
            f"fewer than the minimum window ({detection.min_window_size})"
        )
        if not texts:
            fail(f"no logged prompts answered by {whose} to compare", ExitCode.REFUSED)
    directory = (
        Path(settings.drift.embedder_dir)
        if settings.drift.embedder_dir
        else (Path(settings.home) / "models" / DEFAULT_DIR_NAME)
    )
    embedder = Embedder(EmbedderSettings(model_dir=str(ensure_embedder(directory, console=console))))
    with console.status(f"Embedding {len(texts)} prompts and writing the report"):
        current = embedder.embed(texts)
        baseline = sample_rows(reference.embeddings, detection.reference_sample)
        score = drift_score(current, baseline, evidently_method(detection.method))
        path = write_html_report(current, reference.embeddings, output, detection.method, title=model)
    thresholds = detection.method.thresholds
    if len(texts) >= detection.min_window_size:
        verdict = "[red]drift[/]" if score > thresholds.fire else "[green]no drift[/]"
        console.print(
            f"verdict for {model} ({whose}): {verdict}: {detection.method.name} score {score:.4g} "
            f"{'>' if score > thresholds.fire else '<='} threshold {thresholds.fire:.4g} "
            f"({len(texts)} recent prompts against {reference.meta.count} reference prompts)"
        )
    console.print(f"[green]✓[/] {path}")


def _user_text(route: str, logged_prompt: str) -> str:
    """What drift judged a logged request by: the log keeps chat messages as JSON, prompts as they came."""
    from gateway.edge.guarding import user_words

    if route == "/v1/chat/completions":
        return user_words(route, {"messages": json.loads(logged_prompt)})
    return logged_prompt


def report_command(settings: Settings, client: AdminClient, model: str | None, output: Path, limit: int) -> None:
    target = judged(settings, client, model) if model else None
    show_state(client)
    if model and target:
        write_report(settings, model, target, output, limit)
