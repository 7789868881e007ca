"""What every ``driftgate`` command shares: its options, its stderr console, its exit codes, how it reads the
config and how it fails.

Each CLI module (gateway/cli.py and the feature folders' cli.py) imports these public names rather than
another CLI module's helpers, so the commands agree on option names, environment variables and exit codes.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.text import Text

from gateway.config import API_KEY_ENV, CONFIG_ENV, ConfigError, Settings, load_settings


class ExitCode(enum.IntEnum):
    """What a ``driftgate`` command's exit status means; scripts may rely on these."""

    OK = 0
    # The gateway answered 4xx/5xx, or a check failed (`audit verify` found an edited entry).
    REFUSED = 1
    # A bad option, or a config file or DRIFTGATE_* override that does not describe valid settings.
    USAGE = 2
    # Nothing answered at the gateway's URL (connection refused, timeout, unknown host).
    UNREACHABLE = 3


# Messages, tables and errors go to stderr; stdout carries only what a script reads (a key, --json).
console = Console(stderr=True)

ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", envvar=CONFIG_ENV, help="YAML settings file.", exists=True, dir_okay=False),
]
UrlOption = Annotated[
    Optional[str], typer.Option("--url", help="Gateway base URL; default: host and port from the config.")
]
ApiKeyOption = Annotated[
    Optional[str],
    typer.Option(
        "--api-key",
        envvar=API_KEY_ENV,
        show_envvar=True,
        show_default=False,
        help="Admin key (dg_...) sent as `Authorization: Bearer`.",
    ),
]


def fail(message: str, code: ExitCode) -> NoReturn:
    """Print ``error: message`` as one line (never wrapped, never read as markup) and exit with ``code``."""
    console.print(Text.assemble(("error:", "red"), " ", " ".join(message.split())), soft_wrap=True)
    raise typer.Exit(code)


def settings_or_exit(config: Path | None) -> Settings:
    """The settings, or one line naming what is wrong with them and exit code 2."""
    try:
        return load_settings(config)
    except ConfigError as exc:
        fail(str(exc), ExitCode.USAGE)
