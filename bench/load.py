"""Soak test: sustained locust load on driftgate over a fast fake upstream, with the gateway's memory watched.

    python -m bench.load [--minutes 5] [--users 32] [--variant full] [--sample-s 5]

Starts ``bench.mock_upstream`` and ``driftgate serve`` (one worker; ``--variant`` as in ``bench.gateway``:
``bare``, ``log``, ``guards`` or ``full``), runs ``locust -f bench/locustfile.py`` headless for the
duration, and samples the RSS of the gateway's whole process tree (the server and its worker) every
``--sample-s`` seconds. Prints requests, failures, requests/s, p50/p95/p99 latency, and RSS at start,
after warm-up, at the end, its maximum and its slope (least squares over the samples after warm-up,
MiB per minute). Exits non-zero if any request failed. Results go to ``bench/results/load.json``.

On a 2-core machine locust, the upstream and the gateway share the cores: the rate is what this
arrangement allows, not driftgate's ceiling (``bench.gateway`` measures that).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from bench.gateway import VARIANTS, free_port, process, start_mock, wait_http
from bench.machine import describe

console = Console(width=150)
RESULTS = Path(__file__).parent / "results" / "load.json"
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
MIB = 1024 * 1024


def start_gateway(stack: ExitStack, mock_url: str, workdir: Path, variant: str) -> tuple[str, subprocess.Popen]:
    port = free_port()
    settings = {
        "port": port,
        "workers": 1,
        "home": str(workdir / "home"),
        "models": [{"name": "bench-model", "backends": [mock_url]}],
        **VARIANTS[variant],
    }
    config = workdir / "driftgate.yaml"
    config.write_text(json.dumps(settings))  # JSON is YAML
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
    proc = stack.enter_context(process(command, log=workdir / "driftgate.log"))
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/readyz")
    return url, proc


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (granian runs the app in a worker process)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, int]] = []
        self.start_time = time.monotonic()
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append((time.monotonic() - self.start_time, tree_rss(self.pid)))
            if self._done.wait(self.every_s):
                return

    def stop(self) -> None:
        self._done.set()
        self.join()


def slope_mib_per_min(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 2:
        return 0.0
    xs = [t / 60 for t, _ in samples]
    ys = [rss / MIB for _, rss in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def run_locust(url: str, seconds: int, users: int, spawn_rate: float, prefix: Path) -> dict[str, dict]:
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "-u", str(users), "-r", str(spawn_rate), "-t", f"{seconds}s", "--stop-timeout", "10",
        "--host", url, "--csv", str(prefix), "--loglevel", "WARNING",
    ]  # fmt: skip
    with open(f"{prefix}.log", "wb") as log:
        subprocess.run(command, check=False, stdout=log, stderr=subprocess.STDOUT)
    rows = {}
    with open(f"{prefix}_stats.csv", newline="") as stats:
        for row in csv.DictReader(stats):
            rows[row["Name"]] = {
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "rps": float(row["Requests/s"]),
                "p50_ms": float(row["50%"] or 0),
                "p95_ms": float(row["95%"] or 0),
                "p99_ms": float(row["99%"] or 0),
            }
    failures = Path(f"{prefix}_failures.csv").read_text() if Path(f"{prefix}_failures.csv").exists() else ""
    rows["Aggregated"]["failure_kinds"] = [line for line in failures.splitlines()[1:] if line][:10]
    return rows


def table(rows: dict[str, dict], memory: dict[str, float], minutes: float, users: int, variant: str) -> Table:
    out = Table(title=f"driftgate {variant} (1 worker), {users} locust users, {minutes:g} min")
    for column in ("endpoint", "requests", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms"):
        out.add_column(column, justify="left" if column == "endpoint" else "right")
    for name, row in rows.items():
        out.add_row(
            "all" if name == "Aggregated" else name,
            f"{row['requests']:,}",
            f"{row['failures']:,}",
            f"{row['rps']:,.0f}",
            f"{row['p50_ms']:.0f}",
            f"{row['p95_ms']:.0f}",
            f"{row['p99_ms']:.0f}",
        )
    rss = Table(title="gateway RSS (server + worker)")
    for column in ("start", "after warm-up", "end", "max", "slope after warm-up"):
        rss.add_column(column, justify="right")
    rss.add_row(
        f"{memory['start_mib']:.1f} MiB",
        f"{memory['warm_mib']:.1f} MiB",
        f"{memory['end_mib']:.1f} MiB",
        f"{memory['max_mib']:.1f} MiB",
        f"{memory['slope_mib_per_min']:+.2f} MiB/min",
    )
    grid = Table.grid()
    grid.add_row(out)
    grid.add_row(rss)
    return grid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--spawn-rate", type=float, default=8.0)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="full")
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--warmup-s", type=float, default=60.0, help="RSS samples before this: not in the slope")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    seconds = max(1, round(args.minutes * 60))
    command = " ".join(["python -m bench.load", *sys.argv[1:]])
    machine = describe(command, ["litestar", "granian", "msgspec", "aiohttp", "locust"])

    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="driftgate-load-")))
        mock_url = start_mock(stack)
        url, gateway = start_gateway(stack, mock_url, workdir, args.variant)
        sampler = RssSampler(gateway.pid, args.sample_s)
        sampler.start()
        try:
            rows = run_locust(url, seconds, args.users, args.spawn_rate, workdir / "locust")
        finally:
            sampler.stop()
        log_tail = (workdir / "driftgate.log").read_text(errors="replace")[-2000:]

    samples = sampler.samples
    warm = [(t, rss) for t, rss in samples if t >= min(args.warmup_s, seconds / 2)]
    memory = {
        "start_mib": samples[0][1] / MIB,
        "warm_mib": warm[0][1] / MIB if warm else samples[0][1] / MIB,
        "end_mib": samples[-1][1] / MIB,
        "max_mib": max(rss for _, rss in samples) / MIB,
        "slope_mib_per_min": slope_mib_per_min(warm),
        "samples": [(round(t, 1), round(rss / MIB, 1)) for t, rss in samples],
    }
    report = {"machine": machine, "variant": args.variant, "users": args.users, "seconds": seconds, "rows": rows}
    report["memory"] = memory
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    console.print(f"{machine['cores']} cores, {machine['cpu']}, Python {machine['python']}, {machine['versions']}")
    console.print(f"command: {command}")
    console.print(table(rows, memory, args.minutes, args.users, args.variant))
    aggregated = rows["Aggregated"]
    if aggregated["failures"]:
        console.print("[red]failures:[/red]", *aggregated["failure_kinds"], sep="\n")
        console.print("gateway log tail:", log_tail)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
