"""Where a gateway worker's CPU time goes under load: py-spy samples of one worker, summed by part.

    python -m bench.profile_gateway [--variant guards] [--stream] [--concurrency 50] [--duration 15]

One driftgate worker (``bench.gateway``'s variants) in front of the fake upstream, the load generator in its
own process, and ``py-spy record`` on the worker for the load's duration (``pip install py-spy``; root or
ptrace rights). By default only the thread holding the GIL is sampled: the Python work that runs one at
a time, which is what bounds a worker (onnxruntime runs beside it; ``--all-threads`` counts it). Each
sample is charged to the innermost frame of driftgate's own code, or of the guards' libraries, that it
passes through, so the table reads "the PII guard's phone matching" or "Litestar", not CPython internals.
Also prints the 15 heaviest leaf functions.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.gateway import load, start_driftgate, start_mock

console = Console(width=150)
# Module prefixes a sample is charged to, the first found from the innermost frame outwards.
PARTS = (
    ("guards/", "guards"),
    ("phonenumbers/", "phonenumbers (PII phone matching)"),
    ("onnxruntime/", "onnxruntime"),
    ("tokenizers/", "tokenizers"),
    ("gateway/", "gateway"),
    ("monitor/", "monitor"),
    ("litestar/", "litestar"),
    ("httpx/", "httpx"),
    ("httpcore/", "httpcore"),
    ("granian/", "granian"),
    ("msgspec/", "msgspec"),
    ("asyncio/", "asyncio (event loop)"),
    ("opentelemetry/", "opentelemetry"),
    ("prometheus_client/", "prometheus_client"),
    ("sqlalchemy/", "sqlalchemy"),
)


def worker_pid(url: str) -> int:
    """The granian worker serving ``url`` (its process title names the address and "worker-1")."""
    address = url.split("//", 1)[1].split("/", 1)[0]
    for _ in range(50):
        found = subprocess.run(["pgrep", "-f", f"{address}.*worker-1"], capture_output=True, text=True).stdout
        if found.split():
            return int(found.split()[0])
        time.sleep(0.2)
    raise RuntimeError(f"no granian worker found serving {address}")


def charge(stack: str) -> tuple[str, str]:
    """(part, function) of one collapsed stack: the innermost frame in a known part, and the leaf function."""
    frames = stack.split(";")
    leaf = frames[-1]
    for frame in reversed(frames):
        for prefix, part in PARTS:
            if prefix in frame:
                # "function (path/to/module.py:line)": keep the function and module, not the line
                name = frame.split(" (")[0]
                module = frame.split(" (")[-1].split(":")[0].rsplit("site-packages/", 1)[-1]
                return f"{part}: {module} {name}", leaf
    return "other", leaf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="guards")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--all-threads",
        action="store_true",
        help="every thread on CPU (onnxruntime's GIL-free inference included), not only the one holding the GIL",
    )
    args = parser.parse_args()
    if shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        console.print("[red]py-spy is not installed[/]: pip install py-spy")
        return 2
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        work = Path(scratch)
        target = start_driftgate(stack, start_mock(stack), work, 1, args.variant)
        pid = worker_pid(target.url)
        out = work / "profile.txt"
        recorder = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--rate", str(args.rate), "--format", "raw", "--output", str(out),
             "--duration", str(int(args.duration)), "--nonblocking",
             *([] if args.all_threads else ["--gil"])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        result = load(target, args.stream, args.duration, args.concurrency)
        recorder.wait(60)
        parts: Counter[str] = Counter()
        leaves: Counter[str] = Counter()
        for line in out.read_text().splitlines():
            stack_text, _, count = line.rpartition(" ")
            part, leaf = charge(stack_text)
            parts[part] += int(count)
            leaves[leaf.split(" (")[0] + " " + leaf.split("/")[-1].rstrip(")")] += int(count)
    total = sum(parts.values()) or 1
    what = f"{'stream' if args.stream else 'chat'} c={args.concurrency}, {args.variant}: {result.get('rps', 0):.0f} rps"
    threads = "threads on CPU" if args.all_threads else "the thread holding the GIL"
    view = Table(title=f"Worker samples ({threads}) by part ({what}, {total} samples)")
    view.add_column("part: module function")
    view.add_column("share", justify="right")
    for part, count in parts.most_common(args.top):
        view.add_row(part[:110], f"{count / total:.1%}")
    console.print(view)
    view = Table(title="Heaviest leaf functions")
    view.add_column("function")
    view.add_column("share", justify="right")
    for leaf, count in leaves.most_common(15):
        view.add_row(leaf, f"{count / total:.1%}")
    console.print(view)
    return 0


if __name__ == "__main__":
    sys.exit(main())
