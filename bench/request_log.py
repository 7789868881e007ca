"""Request log on versus off: the same gateway configuration but for the log, measured in alternation.

    python -m bench.request_log [--rounds 5] [--duration 3] [--concurrency 50]

On a shared 2-core machine one pass of each is mostly noise; alternating short runs and comparing medians
keeps both sides under the same conditions. Prints a table and writes bench/results/request_log.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.gateway import load, start_driftgate, start_mock
from bench.machine import describe

RESULTS = Path(__file__).parent / "results" / "request_log.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    console = Console(width=120)
    machine = describe("python -m bench.request_log " + " ".join(sys.argv[1:]), ["driftgate", "sqlalchemy"])
    console.print(machine)
    runs: dict[str, list[float]] = {"bare": [], "log": []}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
        mock = start_mock(stack)
        targets = {name: start_driftgate(stack, mock, Path(scratch), 1, name) for name in runs}
        for round_ in range(args.rounds):
            for name, target in targets.items():
                rps = load(target, False, args.duration, args.concurrency)["rps"]
                runs[name].append(rps)
                console.print(f"  round {round_ + 1}: {name} {rps:,.0f} rps")
    medians = {name: statistics.median(values) for name, values in runs.items()}
    change = medians["log"] / medians["bare"] - 1
    table = Table(title=f"chat, {args.concurrency} concurrent, median of {args.rounds} alternating runs")
    for column in ("request log", "median rps", "runs"):
        table.add_column(column)
    for name, values in runs.items():
        table.add_row("on" if name == "log" else "off", f"{medians[name]:,.0f}", " ".join(f"{v:,.0f}" for v in values))
    console.print(table)
    console.print(f"throughput with the log on: {change:+.1%} (target: within 5%)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine, "runs": runs, "medians": medians, "change": change}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
