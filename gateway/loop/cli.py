"""``driftgate loop list|show|approve``: each loop run as a timeline (alert, decision, job, eval, canary,
outcome), and the approval a run waits for under a ``manual`` policy."""

from __future__ import annotations

import time
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from gateway.admin_client import connect
from gateway.cli_options import ApiKeyOption, ConfigOption, UrlOption, console

app = typer.Typer(help="The closed loop: drift alerts, retraining runs and their outcomes.", no_args_is_help=True)
ADMIN = "/admin/loop"
RunArgument = Annotated[str, typer.Argument(help="Loop run id (see `driftgate loop list`).")]


def when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


@app.command("list")
def list_runs(
    alias: Annotated[Optional[str], typer.Option(help="Only this alias.")] = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Recent loop runs, newest first."""
    with connect(config, url, api_key) as client:
        runs = client.get(ADMIN, alias=alias)["runs"]
    table = Table(title="loop runs")
    for column in ("run", "alias", "status", "started", "candidate", "reason"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            run["id"], run["alias"], run["status"], when(run["created"]), run["candidate"] or "", run["reason"]
        )
    console.print(table)


@app.command()
def show(run: RunArgument, config: ConfigOption = None, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """One run's timeline."""
    with connect(config, url, api_key) as client:
        found: dict[str, Any] = client.get(f"{ADMIN}/{run}")
    table = Table(title=f"{found['id']} ({found['alias']}): {found['status']}")
    for column in ("time", "step", "detail"):
        table.add_column(column)
    for event in found["timeline"]:
        table.add_row(when(event["at"]), event["step"], event["detail"])
    console.print(table)


@app.command()
def approve(run: RunArgument, config: ConfigOption = None, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Let a run waiting for approval (``approval: manual``) start its training job."""
    with connect(config, url, api_key) as client:
        found = client.post(f"{ADMIN}/{run}/approve")
    console.print(f"[green]✓[/] {found['id']} ({found['alias']}): {found['status']}")
