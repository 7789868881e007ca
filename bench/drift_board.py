"""The fleet's drift board: what recording a prompt costs, and that it stays off the request path.

    python -m bench.drift_board [--writers 50] [--prompts 4000] [--rounds 3] [--rate 100] [--duration 5]

Part 1 records prompts the way gateway workers do (``DriftMonitor.observe_many``, one call per embedded
batch), with ``--writers`` threads at once, each its own monitor as each replica is, on a SQLite file and on
a throwaway PostgreSQL cluster (Debian's server binaries, as the tests start them). Full windows are claimed
by the writer that fills them and judged (MMD against the reference), as in the gateway. It prints the wall
time per call and per prompt, and the prompts recorded per second by all writers together.

Part 2 runs the gateway over the fake upstream with the drift watch off and on (a reference on the model,
the board in the gateway's SQLite state database), alternating short rounds at a fixed request rate below
saturation, and compares request latency: the request path only queues the prompt; the embedding and the
board write run in the watch's task and thread.
Prints tables and writes bench/results/drift_board.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from bench.gateway import load, start_driftgate, start_mock
from bench.machine import describe
from demo.corpora import prompts
from monitor.drift import DriftMonitor, DriftSettings
from monitor.reference import ReferenceMeta, ReferenceSet

RESULTS = Path("bench/results/drift_board.json")
EMBEDDER = Path(".driftgate/models/all-MiniLM-L6-v2-onnx").resolve()
console = Console(width=150)


def reference(dim: int = 384, rows: int = 1000) -> ReferenceSet:
    embeddings = np.random.default_rng(0).normal(size=(rows, dim)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    meta = ReferenceMeta(alias="a", version="1", embedder="bench", count=rows, source="bench", created_at=0)
    return ReferenceSet(meta=meta, embeddings=embeddings)


def record(url: str, writers: int, total: int, batch: int) -> dict:
    """``writers`` replicas appending ``total`` prompts in calls of ``batch``, judging the windows they fill."""
    engine = sa.create_engine(url, pool_size=writers, max_overflow=0)  # a connection per replica
    ref = reference()
    fleet = [DriftMonitor(DriftSettings(window_size=200, min_window_size=100), engine=engine) for _ in range(writers)]
    for monitor in fleet:
        monitor.set_reference("a", ref)
    rows = ref.embeddings
    calls: list[float] = []
    judged: list[int] = []
    lock = threading.Lock()

    def writer(k: int) -> None:
        monitor, mine, windows = fleet[k], [], 0
        for start in range(k * batch, total, writers * batch):
            entries = [("a", f"r{n}", rows[n % len(rows)]) for n in range(start, min(start + batch, total))]
            began = time.perf_counter()
            for window in monitor.observe_many(entries):
                monitor.apply(monitor.score(window))
                windows += 1
            mine.append(time.perf_counter() - began)
        with lock:
            calls.extend(mine)
            judged.append(windows)

    began = time.perf_counter()
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    state = fleet[0].state("a")
    engine.dispose()
    ms = sorted(c * 1000 for c in calls)
    return {
        "writers": writers,
        "batch": batch,
        "call_p50_ms": ms[len(ms) // 2],
        "call_p99_ms": ms[int(len(ms) * 0.99)],
        "us_per_prompt": elapsed / total * 1e6,  # all writers together: the board's cost per prompt
        "prompts_per_s": total / elapsed,
        "windows_judged": sum(judged),
        "windows_in_state": state.windows_checked,
    }


def board_costs(args: argparse.Namespace, workdir: Path) -> dict[str, list[dict]]:
    from tests.pg import running_cluster  # the tests' throwaway cluster: Debian's binaries, a free port

    results: dict[str, list[dict]] = {}
    with running_cluster() as cluster:
        urls = {
            "sqlite": f"sqlite:///{workdir / 'board.db'}",
            "postgresql": cluster.create_database("bench_board"),
        }
        for name, url in urls.items():
            results[name] = []
            for writers, batch in ((1, 1), (1, 32), (args.writers, 1), (args.writers, 32)):
                _empty(url)
                results[name].append(record(url, writers, args.prompts, batch))
                console.print(f"  {name}: {results[name][-1]}")
    return results


def _empty(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in ("drift_prompts", "drift_windows", "drift_state"):
            if sa.inspect(conn).has_table(table):
                conn.execute(sa.text(f"DELETE FROM {table}"))
    engine.dispose()


def request_latency(args: argparse.Namespace, workdir: Path) -> dict[str, list[dict]]:
    reference_file = workdir / "reference.txt"
    reference_file.write_text("\n".join(prompts("support", 300, 1)))
    drift = {"references": {"bench-model": str(reference_file)}, "embedder_dir": str(EMBEDDER)}
    sides = {"off": {}, "on": {"drift": drift}}
    rounds: dict[str, list[dict]] = {side: [] for side in sides}
    with ExitStack() as stack:
        mock = start_mock(stack)
        targets = {
            side: start_driftgate(stack, mock, workdir, 1, "bare", overrides=extra, label=side)
            for side, extra in sides.items()
        }
        for round_ in range(args.rounds):
            for side, target in targets.items():
                rounds[side].append(load(target, False, args.duration, args.concurrency, rate=args.rate))
                got = rounds[side][-1]
                console.print(f"  round {round_ + 1}, drift {side}: p50 {got['p50_ms']} ms, p99 {got['p99_ms']} ms")
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--prompts", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    machine = describe("python -m bench.drift_board " + " ".join(sys.argv[1:]), ["driftgate", "sqlalchemy", "psycopg"])
    console.print(machine)
    with tempfile.TemporaryDirectory() as tmp:
        costs = board_costs(args, Path(tmp))
        latency = request_latency(args, Path(tmp))
    table = Table(title=f"recording prompts on the drift board ({args.prompts} prompts, windows of 200)")
    for column in (
        "database",
        "writers",
        "prompts/call",
        "call p50 ms",
        "call p99 ms",
        "µs/prompt (all writers)",
        "prompts/s",
    ):
        table.add_column(column)
    for name, rows in costs.items():
        for row in rows:
            table.add_row(
                name, str(row["writers"]), str(row["batch"]), f"{row['call_p50_ms']:.2f}",
                f"{row['call_p99_ms']:.2f}", f"{row['us_per_prompt']:.0f}", f"{row['prompts_per_s']:,.0f}",
            )  # fmt: skip
    console.print(table)
    table = Table(title=f"chat at {args.rate:.0f} requests/s, {args.concurrency} concurrent, {args.rounds} rounds each")
    for column in ("drift watch", "median p50 ms", "median p99 ms", "rps", "errors"):
        table.add_column(column)
    for side, runs in latency.items():
        table.add_row(
            side, f"{statistics.median(r['p50_ms'] for r in runs):.2f}",
            f"{statistics.median(r['p99_ms'] for r in runs):.2f}",
            f"{statistics.median(r['rps'] for r in runs):.0f}", str(sum(r["errors"] for r in runs)),
        )  # fmt: skip
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine, "board": costs, "latency": latency}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
