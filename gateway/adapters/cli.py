"""``driftgate adapters ...``: the running gateway's admin API from a terminal.

Every command is one HTTP call, so what the CLI does and what an operator's script does with curl are the
same thing, and every gateway worker learns of the change the same way (the registry's revision).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from gateway.admin_client import connect
from gateway.cli_options import ApiKeyOption, ConfigOption, ExitCode, UrlOption, console, fail, settings_or_exit

app = typer.Typer(help="LoRA adapter versions and the aliases that serve them.", no_args_is_help=True)
ADMIN = "/admin/adapters"


def _number(alias: str, version: str) -> int:
    """``2`` or ``support@2``."""
    prefix, _, number = version.rpartition("@")
    if (prefix and prefix != alias) or not number.isdigit():
        fail(f"{version!r} is not a version of {alias} (give 2 or {alias}@2)", ExitCode.USAGE)
    return int(number)


def _show(alias: dict[str, Any]) -> None:
    canary = f", canary {alias['canary']} at {alias['canary_share']:.0%}" if alias["canary"] else ""
    console.print(f"{alias['name']}: production {alias['production'] or '-'}{canary}")


def _json_file(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        fail(f"{path} is not a readable JSON file: {exc}", ExitCode.USAGE)


@app.command("list")
def list_adapters(config: ConfigOption = None, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Every alias with its versions and their stages."""
    with connect(config, url, api_key) as client:
        listing = client.get(f"{ADMIN}/")
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
    eval_results: Annotated[Optional[Path], typer.Option(help="JSON file of eval results.", dir_okay=False)] = None,
    training_run: Annotated[
        Optional[Path], typer.Option(help="JSON file describing the training run.", dir_okay=False)
    ] = None,
    reference_embeddings: Annotated[Optional[str], typer.Option(help="Drift reference for this version.")] = None,
    dataset: Annotated[
        Optional[Path], typer.Option(help="Training JSONL: the drift reference and what the loop retrains from.")
    ] = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Register a new immutable version (a candidate) after checking its adapter files."""
    body = {
        "alias": alias,
        "weights": str(weights.resolve()),
        "base_model": base_model or settings_or_exit(config).embedded.model,
        "author": author,
        "eval_results": _json_file(eval_results) or {},
        "training_run": _json_file(training_run),
        "reference_embeddings": reference_embeddings,
        "dataset": str(dataset.resolve()) if dataset else None,
    }
    with connect(config, url, api_key) as client:
        version = client.post(f"{ADMIN}/", body)
    console.print(f"[green]✓[/] registered {version['alias']}@{version['number']} ({version['stage']})")


@app.command()
def promote(
    alias: str, version: str, config: ConfigOption = None, url: UrlOption = None, api_key: ApiKeyOption = None
) -> None:
    """Load VERSION on every backend, then make it ALIAS's production version."""
    number = _number(alias, version)
    with connect(config, url, api_key) as client:
        _show(client.post(f"{ADMIN}/{alias}/promote", {"version": number}))


@app.command()
def merge(
    alias: Annotated[str, typer.Argument(help="Alias the merged version joins (new or existing), e.g. blend.")],
    sources: Annotated[list[str], typer.Argument(help="Registered versions to combine, e.g. support@2 travel@1.")],
    method: Annotated[
        str, typer.Option(help="linear, cat (ranks add up), svd, ties, dare_linear or dare_ties.")
    ] = "linear",
    weights: Annotated[
        Optional[str], typer.Option(help="Comma-separated, one per source; default: equal, summing to 1.")
    ] = None,
    density: Annotated[Optional[float], typer.Option(help="Share of each delta kept by ties/dare.")] = None,
    svd_rank: Annotated[Optional[int], typer.Option(help="Rank an svd merge reduces to.")] = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Combine SOURCES into a new candidate version of ALIAS (checked against the backends' rank limit first)."""
    parsed = None
    if weights is not None:
        try:
            parsed = [float(part) for part in weights.split(",")]
        except ValueError:
            fail(f"--weights {weights!r} is not a comma-separated list of numbers", ExitCode.USAGE)
    body = {"sources": sources, "method": method, "weights": parsed, "density": density, "svd_rank": svd_rank}
    with connect(config, url, api_key) as client:
        version = client.post(f"{ADMIN}/{alias}/merge", body)
    run = version.get("training_run") or {}
    console.print(
        f"registered {version['alias']}@{version['number']}: {run.get('method')} merge of"
        f" {', '.join(run.get('merged_from', []))} (rank {run.get('rank')}); canary or promote it when ready"
    )


@app.command("merge-into-base")
def merge_into_base(
    weights: Annotated[Path, typer.Argument(help="peft adapter directory (LoRA or DoRA).", file_okay=False)],
    out: Annotated[Path, typer.Argument(help="Folder for the merged model (must not exist).", file_okay=False)],
    base: Annotated[
        Optional[Path], typer.Option(help="Base model folder; default: the adapter's base_model_name_or_path.")
    ] = None,
) -> None:
    """Fold an adapter into its base model's weights and save a whole model that vLLM serves as a base model
    (the way to serve a DoRA adapter). Runs on this machine, with the trainer's dependencies."""
    from training.merge import adapter_config
    from training.merge import merge_into_base as fold

    if out.exists():
        fail(f"{out} exists; give a new folder", ExitCode.USAGE)
    try:
        base_model = base or Path(adapter_config(weights)["base_model_name_or_path"])
    except (OSError, ValueError, KeyError) as exc:
        fail(f"{weights} is not a peft adapter with a base model: {exc}", ExitCode.USAGE)
    with console.status(f"merging {weights} into {base_model}"):
        fold(base_model, weights, out)
    console.print(f"saved {out}: start a vLLM server with `--model {out}` and add it under `models:` in the config")


@app.command()
def canary(
    alias: str,
    version: str,
    share: Annotated[float, typer.Option(help="Share of the alias's callers sent to VERSION.")] = 0.1,
    config: ConfigOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Send a sticky share of ALIAS's callers to VERSION."""
    number = _number(alias, version)
    with connect(config, url, api_key) as client:
        _show(client.post(f"{ADMIN}/{alias}/canary", {"version": number, "share": share}))


@app.command()
def rollback(alias: str, config: ConfigOption = None, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """End ALIAS's canary, or return production to the version before the last promotion."""
    with connect(config, url, api_key) as client:
        _show(client.post(f"{ADMIN}/{alias}/rollback"))


@app.command()
def lineage(
    version: Annotated[str, typer.Argument(help="ALIAS@N, e.g. support@3.")],
    config: ConfigOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """VERSION's chain back to the first version: training run, data hashes, drift event and parent of each."""
    alias, _, _ = version.rpartition("@")
    if not alias:
        fail(f"{version!r} is not ALIAS@N (e.g. support@3)", ExitCode.USAGE)
    number = _number(alias, version)
    with connect(config, url, api_key) as client:
        found = client.get(f"{ADMIN}/{alias}/versions/{number}/lineage")
    table = Table(title=f"lineage of {found['version']}")
    for column in ("version", "stage", "registered", "author", "loop run / job", "data sha256", "drift event"):
        table.add_column(column)
    for step in found["chain"]:
        data = "\n".join(f"{role} {digest[:12]}" for role, digest in sorted(step["data_sha256"].items()))
        table.add_row(
            step["version"],
            step["stage"],
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(step["created"])),
            step["author"] or "",
            " / ".join(part for part in (step["loop_run"], step["job"]) if part),
            data,
            _drift_event(step["drift_event"]),
        )
    console.print(table)
    first = found["chain"][-1]
    console.print(f"{len(found['chain'])} versions; the line starts at {first['version']}")


def _drift_event(event: dict[str, Any] | None) -> str:
    if not event:
        return ""
    labels = event.get("labels") or {}
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event["at"])) if "at" in event else ""
    return f"{labels.get('alertname', 'alert')} {when}".strip()
