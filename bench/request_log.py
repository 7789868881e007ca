"""Request log on versus off: the same gateway configuration but for the log, measured in alternation.

    python -m bench.request_log [--rounds 5] [--duration 3] [--concurrency 50] [--rate 800]

On a shared 2-core machine one pass of each is mostly noise; alternating short runs and comparing medians
(of the runs, and of the per-round ratios) keeps both sides under the same conditions. At saturation the
load generator and the mock upstream share the gateway's two cores, so the same rounds are repeated at a
fixed ``--rate`` below saturation, measuring the gateway process's CPU seconds per request: the cost the
log adds, with far less noise than a saturated throughput figure. That CPU is split between the event
loop's thread (building and queueing records) and the process's other threads (the log's writer thread,
granian's I/O threads).
Prints tables and writes bench/results/request_log.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import psutil
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
    parser.add_argument("--rate", type=float, default=800.0, help="requests/s for the CPU-per-request rounds")
    args = parser.parse_args()
    console = Console(width=120)
    machine = describe("python -m bench.request_log " + " ".join(sys.argv[1:]), ["driftgate", "sqlalchemy"])
    console.print(machine)
    runs: dict[str, list[float]] = {"bare": [], "log": []}
    cpu_us: dict[str, list[float]] = {"bare": [], "log": []}
    loop_cpu_us: dict[str, list[float]] = {"bare": [], "log": []}  # the event loop's thread alone
    with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
        mock = start_mock(stack)
        targets = {name: start_driftgate(stack, mock, Path(scratch), 1, name) for name in runs}
        for round_ in range(args.rounds):
            for name, target in targets.items():
                rps = load(target, False, args.duration, args.concurrency)["rps"]
                runs[name].append(rps)
                console.print(f"  round {round_ + 1}: {name} {rps:,.0f} rps")
        for round_ in range(args.rounds):
            for name, target in targets.items():
                server = _listener(target)
                before, loop_before = _cpu_s(server)
                served = load(target, False, args.duration, args.concurrency, rate=args.rate)["rps"] * args.duration
                after, loop_after = _cpu_s(server)
                cpu_us[name].append((after - before) / served * 1e6)
                loop_cpu_us[name].append((loop_after - loop_before) / served * 1e6)
                cost, loop_cost = cpu_us[name][-1], loop_cpu_us[name][-1]
                where = f"round {round_ + 1} at {args.rate:,.0f}/s: {name}"
                console.print(f"  {where} {cost:,.0f} µs CPU/request, {loop_cost:,.0f} in the event loop's thread")
    medians = {name: statistics.median(values) for name, values in runs.items()}
    change = medians["log"] / medians["bare"] - 1
    # Each round runs both sides back to back: the ratio within a round cancels the machine's slow drift.
    paired = statistics.median(on / off - 1 for on, off in zip(runs["log"], runs["bare"], strict=True))
    console.print(
        _table(f"chat, {args.concurrency} concurrent, median of {args.rounds} alternating runs", "median rps", runs)
    )
    cpu = {name: statistics.median(values) for name, values in cpu_us.items()}
    title = f"gateway CPU per request at {args.rate:,.0f} requests/s, median of {args.rounds}"
    console.print(_table(title, "median µs CPU/request", cpu_us))
    console.print(_table(title + ", event loop thread only", "median µs CPU/request", loop_cpu_us))
    loop_cpu = {name: statistics.median(values) for name, values in loop_cpu_us.items()}
    added, added_in_loop = cpu["log"] - cpu["bare"], loop_cpu["log"] - loop_cpu["bare"]
    console.print(
        f"CPU per request with the log on: {cpu['log'] / cpu['bare'] - 1:+.1%} "
        f"({added:+.0f} µs, of which {added_in_loop:+.0f} µs in the event loop's thread)"
    )
    console.print(f"throughput with the log on: {change:+.1%} by medians, {paired:+.1%} by per-round ratios")
    console.print("target: within 5%")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine, "runs": runs, "medians": medians, "change": change, "paired_change": paired}
    results |= {"cpu_us_per_request": cpu_us, "cpu_change": cpu["log"] / cpu["bare"] - 1, "rate": args.rate}
    results |= {"event_loop_cpu_us_per_request": loop_cpu_us}
    RESULTS.write_text(json.dumps(results, indent=2))
    return 0


def _table(title: str, measure: str, rounds: dict[str, list[float]]) -> Table:
    """One row per side (log off, log on): the median and every round."""
    table = Table(title=title)
    for column in ("request log", measure, "runs"):
        table.add_column(column)
    for name, values in rounds.items():
        side = "on" if name == "log" else "off"
        table.add_row(side, f"{statistics.median(values):,.0f}", " ".join(f"{v:,.0f}" for v in values))
    return table


def _listener(target) -> psutil.Process:
    """The process that accepts the target's connections (granian's worker, not its supervisor)."""
    port = urlsplit(target.url).port
    for connection in psutil.net_connections("tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
            return psutil.Process(connection.pid)
    raise RuntimeError(f"nothing listens on port {port}")


def _cpu_s(process: psutil.Process) -> tuple[float, float]:
    """CPU seconds of the whole process and of its main thread, where granian runs the event loop.

    Per-thread times come in clock ticks (10 ms): over a 3 s round at 800/s that is 4 µs per request.
    """
    times = process.cpu_times()
    main = next(thread for thread in process.threads() if thread.id == process.pid)
    return times.user + times.system, main.user_time + main.system_time


if __name__ == "__main__":
    sys.exit(main())
