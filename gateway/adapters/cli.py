"""``driftgate adapters ...``: the running gateway's admin API from a terminal.

Every command is one HTTP call, so what the CLI does and what an operator's script does with curl are the
same thing, and every gateway worker learns of the change the same way (the registry's revision).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import httpx
import typer
from rich.console import Console
from rich.table import Table

from gateway.config import ConfigError, Settings, load_settings

app = typer.Typer(help="LoRA adapter versions and the aliases that serve them.", no_args_is_help=True)
console = Console(stderr=True)

ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", envvar="DRIFTGATE_CONFIG", help="YAML settings file.", exists=True, dir_okay=False),
]
UrlOption = Annotated[
    Optional[str], typer.Option("--url", help="Gateway base URL; default: host and port from the config.")
]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


def _base(config: Path | None, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    settings = _settings(config)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return f"http://{host}:{settings.port}"


def _call(
    base: str, method: str, path: str, body: dict[str, Any] | None = None, prefix: str = "/admin/adapters"
) -> Any:
    # An admin key once the gateway has keys (`driftgate keys create --scope admin`).
    key = os.environ.get("DRIFTGATE_API_KEY")
    headers = {"authorization": f"Bearer {key}"} if key else {}
    try:
        # Promotion waits for every backend to load the adapter: allow more than a plain request.
        reply = httpx.request(method, f"{base}{prefix}{path}", json=body, headers=headers, timeout=180)
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/] no gateway at {base} ({exc.__class__.__name__})")
        raise typer.Exit(1) from exc
    if reply.status_code >= 400:
        try:
            message = reply.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = reply.text
        console.print(f"[red]error {reply.status_code}:[/] {message}")
        raise typer.Exit(1)
    return reply.json()


def _number(alias: str, version: str) -> int:
    """``2`` or ``support@2``."""
    prefix, _, number = version.rpartition("@")
    if (prefix and prefix != alias) or not number.isdigit():
        console.print(f"[red]error:[/] {version!r} is not a version of {alias} (give 2 or {alias}@2)")
        raise typer.Exit(2)
    return int(number)


def _show(alias: dict[str, Any]) -> None:
    canary = f", canary {alias['canary']} at {alias['canary_share']:.0%}" if alias["canary"] else ""
    console.print(f"{alias['name']}: production {alias['production'] or '-'}{canary}")


def _json_file(path: Path | None) -> Any:
    return None if path is None else json.loads(path.read_text())


@app.command("list")
def list_adapters(config: ConfigOption = None, url: UrlOption = None) -> None:
    """Every alias with its versions and their stages."""
    listing = _call(_base(config, url), "GET", "/")
    table = Table(title=f"adapters (registry revision {listing['revision']})")
    for column in ("version", "stage", "serves", "base model", "author", "weights"):
        table.add_column(column)
    for alias in listing["aliases"]:
        for version in alias["versions"]:
            name = f"{version['alias']}@{version['number']}"
            serves = "production" if name == alias["production"] else ""
            if name == alias["canary"]:
                serves = f"canary {alias['canary_share']:.0%}"
            table.add_row(
                name, version["stage"], serves, version["base_model"], version.get("author") or "", version["weights"]
            )
    console.print(table)


@app.command()
def register(
    alias: Annotated[str, typer.Argument(help="Alias the version belongs to, e.g. support.")],
    weights: Annotated[Path, typer.Argument(help="peft adapter directory (shared with vLLM).")],
    base_model: Annotated[Optional[str], typer.Option(help="Configured model it adapts; default: embedded.")] = None,
    author: Annotated[Optional[str], typer.Option(help="Who registers it.")] = None,
    eval_results: Annotated[Optional[Path], typer.Option(help="JSON file of eval results.")] = None,
    training_run: Annotated[Optional[Path], typer.Option(help="JSON file describing the training run.")] = None,
    reference_embeddings: Annotated[Optional[str], typer.Option(help="Drift reference for this version.")] = None,
    dataset: Annotated[
        Optional[Path], typer.Option(help="Training JSONL: the drift reference and what the loop retrains from.")
    ] = None,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Register a new immutable version (a candidate) after checking its adapter files."""
    body = {
        "alias": alias,
        "weights": str(weights.resolve()),
        "base_model": base_model or _settings(config).embedded.model,
        "author": author,
        "eval_results": _json_file(eval_results) or {},
        "training_run": _json_file(training_run),
        "reference_embeddings": reference_embeddings,
        "dataset": str(dataset.resolve()) if dataset else None,
    }
    version = _call(_base(config, url), "POST", "/", body)
    console.print(f"[green]✓[/] registered {version['alias']}@{version['number']} ({version['stage']})")


@app.command()
def promote(alias: str, version: str, config: ConfigOption = None, url: UrlOption = None) -> None:
    """Load VERSION on every backend, then make it ALIAS's production version."""
    _show(_call(_base(config, url), "POST", f"/{alias}/promote", {"version": _number(alias, version)}))


@app.command()
def canary(
    alias: str,
    version: str,
    share: Annotated[float, typer.Option(help="Share of the alias's callers sent to VERSION.")] = 0.1,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Send a sticky share of ALIAS's callers to VERSION."""
    _show(_call(_base(config, url), "POST", f"/{alias}/canary", {"version": _number(alias, version), "share": share}))


@app.command()
def rollback(alias: str, config: ConfigOption = None, url: UrlOption = None) -> None:
    """End ALIAS's canary, or return production to the version before the last promotion."""
    _show(_call(_base(config, url), "POST", f"/{alias}/rollback"))


@app.command()
def approve(
    run: Annotated[str, typer.Argument(help="Loop run id (see `driftgate loop list`).")],
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Let a loop run waiting for approval (manual mode) start its training job."""
    found = _call(_base(config, url), "POST", f"/{run}/approve", prefix="/admin/loop")
    console.print(f"[green]✓[/] {found['id']} ({found['alias']}): {found['status']}")
