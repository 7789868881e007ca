"""``driftgate loop list|show``: each loop run as a timeline (alert, decision, job, eval, canary, outcome)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from gateway.adapters.cli import ConfigOption, UrlOption, _base, _call, console

app = typer.Typer(help="The closed loop: drift alerts, retraining runs and their outcomes.", no_args_is_help=True)


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


@app.command("list")
def list_runs(
    alias: Annotated[Optional[str], typer.Option(help="Only this alias.")] = None,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Recent loop runs, newest first."""
    runs = _call(_base(config, url), "GET", f"?alias={alias}" if alias else "", prefix="/admin/loop")["runs"]
    table = Table(title="loop runs")
    for column in ("run", "alias", "status", "started", "candidate", "reason"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            run["id"], run["alias"], run["status"], _when(run["created"]), run["candidate"] or "", run["reason"]
        )
    console.print(table)


@app.command()
def show(run: str, config: ConfigOption = None, url: UrlOption = None) -> None:
    """One run's timeline."""
    found: dict[str, Any] = _call(_base(config, url), "GET", f"/{run}", prefix="/admin/loop")
    table = Table(title=f"{found['id']} ({found['alias']}): {found['status']}")
    for column in ("time", "step", "detail"):
        table.add_column(column)
    for event in found["timeline"]:
        table.add_row(_when(event["at"]), event["step"], event["detail"])
    console.print(table)
