"""``driftgate bench``: the benchmarks of bench/, which ship with the source repository, not the package.

Each benchmark is a script (``python -m bench.<name>``) that starts what it measures, prints its tables
and writes ``bench/results/<name>.json``; this command lists them and runs one as its own process, so a
benchmark's imports and load never share the CLI's process.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

# The benchmarks; the other modules of bench/ are their helpers (load generator, mock upstream, ...).
BENCHES = ("gateway", "guards", "request_log", "load", "drift", "adapters", "train")


def run_bench(name: str | None, args: list[str], console: Console) -> int:
    """List the benchmarks (no ``name``) or run one with ``args``; the exit code to leave with."""
    folder = Path.cwd() / "bench"
    if not (folder / "__init__.py").exists():
        console.print("[red]error:[/] bench/ ships with the source repository: run this from its root directory.")
        return 2
    if name is None:
        table = Table(title="driftgate bench NAME [ARGS]  (NAME -- --help: its options)")
        table.add_column("name")
        table.add_column("measures")
        for bench in BENCHES:
            docstring = ast.get_docstring(ast.parse((folder / f"{bench}.py").read_text())) or ""
            table.add_row(bench, docstring.splitlines()[0] if docstring else "")
        console.print(table)
        return 0
    if name not in BENCHES:
        console.print(f"[red]error:[/] no benchmark {name!r}; one of: {', '.join(BENCHES)}")
        return 2
    return subprocess.call([sys.executable, "-m", f"bench.{name}", *args])
