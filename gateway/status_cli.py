"""``driftgate status``: the first command an operator runs, one screen of what the gateway is doing.

Everything comes from the running gateway over HTTP (through :mod:`gateway.admin_client`): its version
(``/openapi.json``), readiness (``/readyz``), aliases (``/admin/adapters``), drift (``/admin/drift``), loop
runs (``/admin/loop``), and from its own Prometheus metrics the backends of each model with their health,
guard blocks and the request rate (two scrapes ``--sample-s`` apart). A section the gateway has turned off
says so; metrics the gateway refuses (a scrape token is configured and the admin key is not accepted) leave a
one-line note instead of the sections built from them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import msgspec
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table

from gateway.admin_client import AdminClient, GatewayRefused

LOOP_RUNS_SHOWN = 5


class Backend(msgspec.Struct):
    url: str
    up: bool
    circuit_open: bool
    outstanding: int


class Model(msgspec.Struct):
    name: str
    ready: bool
    backends: list[Backend]


class AliasServing(msgspec.Struct):
    alias: str
    production: str | None
    canary: str | None
    canary_share: float
    versions: int


class AliasDrift(msgspec.Struct):
    alias: str
    version: str | None
    status: str
    score: float | None
    threshold: float | None
    pending: int
    min_window_size: int


class LoopRunLine(msgspec.Struct):
    id: str
    alias: str
    status: str
    created: float
    reason: str
    candidate: str | None


class Traffic(msgspec.Struct):
    requests_total: int
    # Over the --sample-s interval between two scrapes; None when it was 0.
    requests_per_s: float | None
    client_errors_total: int
    server_errors_total: int
    # Guard decisions that blocked, by stage (input, output).
    guard_blocks: dict[str, int]
    # Blocks per answered request (a request can be blocked by several findings: a rate, not a share).
    block_rate: float | None


class GatewayStatus(msgspec.Struct):
    url: str
    version: str
    ready: bool
    unavailable_models: list[str]
    models: list[Model]
    # None: the feature is off in this gateway.
    adapters: list[AliasServing] | None
    drift: list[AliasDrift]
    loop_runs: list[LoopRunLine] | None
    traffic: Traffic | None
    notes: list[str]


def gather(client: AdminClient, metrics_token: str | None, sample_s: float) -> GatewayStatus:
    """Ask the gateway; the first admin call fails the command when the key is refused (401/403)."""
    notes: list[str] = []
    adapters = _optional(client, "/admin/adapters/")
    drift = client.get("/admin/drift")
    loop = _optional(client, "/admin/loop")
    readiness = client.call("GET", "/readyz", accept=(503,))
    version = client.get("/openapi.json")["info"]["version"]
    first = _scrape(client, metrics_token, notes)
    second = None
    if first is not None and sample_s > 0:
        time.sleep(sample_s)
        second = _scrape(client, metrics_token, notes)
    unavailable = list(readiness.get("unavailable_models", []))
    return GatewayStatus(
        url=client.url,
        version=version,
        ready=readiness.get("status") == "ready",
        unavailable_models=unavailable,
        models=_models(second or first, unavailable) if first is not None else [],
        adapters=None if adapters is None else [_serving(alias) for alias in adapters["aliases"]],
        drift=[_drift(alias) for alias in drift["aliases"]],
        loop_runs=None if loop is None else [_run(run) for run in loop["runs"][:LOOP_RUNS_SHOWN]],
        traffic=_traffic(first, second, sample_s) if first is not None else None,
        notes=notes,
    )


def _optional(client: AdminClient, path: str) -> Any:
    """A feature's admin listing, or None when the gateway has it off (404)."""
    try:
        return client.get(path)
    except GatewayRefused as exc:
        if exc.status == 404:
            return None
        raise


Samples = list[tuple[str, dict[str, str], float]]


def _scrape(client: AdminClient, metrics_token: str | None, notes: list[str]) -> tuple[float, Samples] | None:
    """(when, samples) of one /metrics scrape, or None with a note when the gateway refuses it."""
    try:
        reply = client.send("GET", "/metrics", bearer=metrics_token, timeout=10.0)
    except GatewayRefused as exc:
        notes.append(f"metrics refused ({exc}): pass --metrics-token; backends, guards and rates left out")
        return None
    samples = [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    ]
    return time.monotonic(), samples


def _values(samples: Samples, name: str) -> list[tuple[dict[str, str], float]]:
    return [(labels, value) for sample_name, labels, value in samples if sample_name == name]


def _models(scrape: tuple[float, Samples], unavailable: list[str]) -> list[Model]:
    _, samples = scrape
    up = {labels["backend"]: value for labels, value in _values(samples, "driftgate_backend_up")}
    outstanding = {
        labels["backend"]: value for labels, value in _values(samples, "driftgate_backend_outstanding_requests")
    }
    backends: dict[str, list[Backend]] = defaultdict(list)
    for labels, value in _values(samples, "driftgate_backend_circuit_open"):
        url = labels["backend"]
        backends[labels["model"]].append(Backend(url, up.get(url, 0) == 1, value == 1, int(outstanding.get(url, 0))))
    return [Model(name, name not in unavailable, found) for name, found in sorted(backends.items())]


def _traffic(first: tuple[float, Samples], second: tuple[float, Samples] | None, sample_s: float) -> Traffic:
    at, samples = second or first
    by_status = [(int(labels["status"]), value) for labels, value in _values(samples, "driftgate_requests_total")]
    total = sum(value for _, value in by_status)
    rate = None
    if second is not None and sample_s > 0:
        before = sum(value for _, value in _values(first[1], "driftgate_requests_total"))
        rate = (total - before) / (at - first[0])
    blocks: dict[str, int] = defaultdict(int)
    for labels, value in _values(samples, "driftgate_guard_decisions_total"):
        if labels["action"] == "block":
            blocks[labels["stage"]] += int(value)
    return Traffic(
        requests_total=int(total),
        requests_per_s=rate,
        client_errors_total=int(sum(value for status, value in by_status if 400 <= status < 500)),
        server_errors_total=int(sum(value for status, value in by_status if status >= 500)),
        guard_blocks=dict(blocks),
        block_rate=sum(blocks.values()) / total if total else None,
    )


def _serving(alias: dict[str, Any]) -> AliasServing:
    return AliasServing(
        alias["name"], alias["production"], alias["canary"], alias["canary_share"], len(alias["versions"])
    )


def _drift(alias: dict[str, Any]) -> AliasDrift:
    last = alias.get("last") or {}
    return AliasDrift(
        alias["alias"],
        alias.get("version"),
        alias["status"],
        last.get("score"),
        last.get("threshold"),
        alias["pending"],
        alias["min_window_size"],
    )


def _run(run: dict[str, Any]) -> LoopRunLine:
    return LoopRunLine(run["id"], run["alias"], run["status"], run["created"], run["reason"], run["candidate"])


def _ago(at: float) -> str:
    seconds = max(0, time.time() - at)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def render(status: GatewayStatus, console: Console) -> None:
    """Panels and tables for a person; ``--json`` prints :class:`GatewayStatus` instead."""
    ready = "[green]ready[/]" if status.ready else f"[red]not ready[/] ({', '.join(status.unavailable_models)})"
    console.print(Panel(f"driftgate {status.version} at {status.url}: {ready}", expand=False))
    parts: list[Any] = []
    if status.models:
        models = Table(title="models")
        for column in ("model", "ready", "backend", "health", "circuit", "in flight"):
            models.add_column(column)
        for model in status.models:
            for index, backend in enumerate(model.backends):
                models.add_row(
                    model.name if index == 0 else "",
                    ("yes" if model.ready else "[red]no[/]") if index == 0 else "",
                    backend.url,
                    "[green]up[/]" if backend.up else "[red]down[/]",
                    "[red]open[/]" if backend.circuit_open else "closed",
                    str(backend.outstanding),
                )
        parts.append(models)
    parts.append(_aliases_table(status))
    if status.loop_runs is None:
        parts.append("loop: off")
    elif not status.loop_runs:
        parts.append("loop: no runs yet")
    else:
        runs = Table(title=f"last {len(status.loop_runs)} loop runs")
        for column in ("run", "alias", "status", "started", "candidate", "reason"):
            runs.add_column(column)
        for run in status.loop_runs:
            runs.add_row(run.id, run.alias, run.status, _ago(run.created), run.candidate or "", run.reason)
        parts.append(runs)
    if status.traffic is not None:
        parts.append(_traffic_line(status.traffic))
    parts.extend(f"[yellow]![/] {note}" for note in status.notes)
    console.print(Group(*parts))


def _aliases_table(status: GatewayStatus) -> Table | str:
    if not status.adapters and not status.drift:
        return "adapters: off; drift: no model watched" if status.adapters is None else "aliases: none registered yet"
    drift = {line.alias: line for line in status.drift}
    serving = {alias.alias: alias for alias in status.adapters or []}
    table = Table(title="aliases and drift" if status.adapters is not None else "drift (adapters off)")
    for column in ("model", "production", "canary", "drift", "last score / threshold", "pending"):
        table.add_column(column)
    for name in [*serving, *(n for n in drift if n not in serving)]:
        alias, watched = serving.get(name), drift.get(name)
        canary = f"{alias.canary} at {alias.canary_share:.0%}" if alias and alias.canary else "-"
        state = "not watched"
        scores = pending = "-"
        if watched is not None:
            state = {"drifting": "[red]drifting[/]", "ok": "[green]ok[/]"}.get(watched.status, watched.status)
            if watched.score is not None:
                scores = f"{watched.score:.4g} / {watched.threshold:.4g}"
            pending = f"{watched.pending} (verdict from {watched.min_window_size})"
        production = alias.production if alias else (watched.version if watched else None)
        table.add_row(name, production or "-", canary, state, scores, pending)
    return table


def _traffic_line(traffic: Traffic) -> str:
    rate = "-" if traffic.requests_per_s is None else f"{traffic.requests_per_s:.2f}/s"
    blocks = ", ".join(f"{stage} {count}" for stage, count in sorted(traffic.guard_blocks.items())) or "none"
    per_request = "" if traffic.block_rate is None else f" ({traffic.block_rate:.1%} of requests)"
    return (
        f"requests: {rate} now, {traffic.requests_total} answered "
        f"({traffic.client_errors_total} 4xx, {traffic.server_errors_total} 5xx); guard blocks: {blocks}{per_request}"
    )
