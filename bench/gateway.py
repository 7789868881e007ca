"""Gateway benchmark: the upstream directly, driftgate, and LiteLLM's proxy, under the same load in one run.

    python -m bench.gateway [--duration 5] [--litellm-venv PATH] [--compare bench/results/gateway.json]

Each target sits in front of the same fast fake upstream (bench.mock_upstream); the load generator
(bench.loadgen) is its own process. On a 2-core machine the load generator, the upstream and the gateway
share the cores: the arrangement is the same for every target, so compare ratios, not absolute figures.
LiteLLM runs from its own virtual environment (never a driftgate dependency): create it with
``python -m venv V && V/bin/pip install 'litellm[proxy]==1.109.1'`` and pass ``--litellm-venv V``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.machine import describe

console = Console(width=150)
RESULTS = Path(__file__).parent / "results" / "gateway.json"
# A 1,000-character prompt with nothing to redact: what the guards cost on clean traffic of a typical size.
PROMPT = (
    "I run a small bakery and I'm planning next month's menu. We sell sourdough, rye, and a few pastries, and "
    "customers keep asking for something seasonal. Could you suggest three autumn breads that use local "
    "ingredients like apples, pumpkins, walnuts and honey? For each one, give me a short description for the "
    "chalkboard, the main flavours, how long the dough needs to prove, and whether it keeps well for a second "
    "day. I also need to know which of them would work as a sandwich loaf, because our lunch trade is growing "
    "and we want a bread that slices cleanly. Please keep the tone friendly and simple, since the staff will "
    "read the notes aloud to customers. Finally, suggest one pastry that pairs with coffee, can be made the "
    "evening before, and travels well in a paper bag, and tell me roughly how many portions one batch makes. "
    "Thank you, this helps a lot with planning the weekly orders and the shopping list for the supplier."
)
SCENARIOS = [
    ("chat c=1", False, 1),
    ("chat c=50", False, 50),
    ("chat c=200", False, 200),
    ("stream c=1 (TTFT)", True, 1),
    ("stream c=50 (TTFT)", True, 50),
]


@dataclass
class Target:
    name: str
    url: str
    model: str = "bench-model"
    key: str = ""
    overhead_header: str | None = None
    results: dict[str, dict] = field(default_factory=dict)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout_s: float = 120, headers: dict | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(command: list[str], env: dict | None = None, log: Path | None = None):
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def start_mock(stack: ExitStack) -> str:
    port = free_port()
    stack.enter_context(process([sys.executable, "-m", "bench.mock_upstream", "--port", str(port)]))
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health")
    return url


# driftgate configurations measured side by side: what each one switches on.
VARIANTS = {
    "bare": {"guards": {"enabled": False}, "request_log": None},
    "bare-noconsole": {"guards": {"enabled": False}, "request_log": None, "console": {"enabled": False}},
    "log": {"guards": {"enabled": False}},
    "guards": {"request_log": None},
    "full": {},
    "full-noconsole": {"console": {"enabled": False}},
}


def export_guard_models(workdir: Path) -> Path:
    """The default guard models, exported once per run and copied into each variant's home: a gateway would
    otherwise export them (and train the injection model) at start, inside the readiness wait."""
    from guards.injection_export import ensure_injection_model
    from guards.jigsaw_export import ensure_jigsaw_model

    directory = workdir / "guard-models"
    ensure_jigsaw_model(directory)
    ensure_injection_model(directory)
    return directory


def start_driftgate(
    stack: ExitStack,
    mock_url: str,
    workdir: Path,
    workers: int,
    variant: str,
    overrides: dict | None = None,
    label: str = "",
) -> Target:
    """driftgate serve with a variant's settings (plus ``overrides``, under the name ``variant-label``)."""
    port = free_port()
    name = f"{variant}-{label}" if label else variant
    config = workdir / f"driftgate-{name}.yaml"
    if VARIANTS[variant].get("guards", {}).get("enabled", True):
        shutil.copytree(export_guard_models(workdir), workdir / f"home-{name}" / "models" / "guards")
    settings = {
        "port": port,
        "workers": workers,
        "home": str(workdir / f"home-{name}"),
        "models": [{"name": "bench-model", "backends": [mock_url]}],
        **VARIANTS[variant],
        **(overrides or {}),
    }
    config.write_text(json.dumps(settings))  # JSON is YAML
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
    stack.enter_context(process(command, log=workdir / f"driftgate-{name}.log"))
    wait_http(f"http://127.0.0.1:{port}/readyz")
    return Target(
        f"driftgate {name} ({workers}w)",
        f"http://127.0.0.1:{port}/v1/chat/completions",
        overhead_header="x-driftgate-overhead-ms",
    )


def start_litellm(stack: ExitStack, venv: Path, mock_url: str, workdir: Path) -> Target:
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: bench-model\n    litellm_params:\n      model: openai/bench-model\n"
        f"      api_base: {mock_url}/v1\n      api_key: unused\n"
    )
    env = {"LITELLM_MASTER_KEY": "sk-bench", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [str(venv / "bin" / "litellm"), "--config", str(config), "--port", str(port), "--num_workers", "2"]
    stack.enter_context(process(command, env=env, log=workdir / "litellm.log"))
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout_s=180)
    return Target(
        "LiteLLM (2w)",
        f"http://127.0.0.1:{port}/v1/chat/completions",
        key="sk-bench",
        overhead_header="x-litellm-overhead-duration-ms",
    )


def load(target: Target, stream: bool, duration: float, concurrency: int = 1, rate: float = 0.0) -> dict:
    command = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        target.url,
        "--model",
        target.model,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--warmup",
        "1",
        "--prompt",
        PROMPT,
    ]
    if target.key:
        command += ["--key", target.key]
    if stream:
        command.append("--stream")
    if rate:
        command += ["--rate", str(rate)]
    if target.overhead_header:
        command += ["--overhead-header", target.overhead_header]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:  # one failed scenario is reported in its cell, not the loss of the whole run
        console.print(f"[red]load generator failed[/]: {done.stderr.strip().splitlines()[-1:]}")
        return {"rps": 0.0, "p50_ms": None, "p99_ms": None, "errors": 1, "failed": done.stderr[-2000:]}
    return json.loads(done.stdout)


def measure(targets: list[Target], duration: float) -> None:
    for target in targets:
        for name, stream, concurrency in SCENARIOS:
            console.print(f"  {target.name}: {name}")
            target.results[name] = load(target, stream, duration, concurrency)
    # Added latency under load: an open loop at half of driftgate's own saturation rate.
    gateway = next(t for t in targets if t.name.startswith("driftgate"))  # the barest variant: listed first
    rate = max(gateway.results[name]["rps"] for name, stream, _ in SCENARIOS if not stream) / 2
    for target in targets:
        if target.name.startswith("LiteLLM"):
            continue
        target.results["chat open-loop"] = load(target, False, duration, rate=rate)
        target.results["chat open-loop"]["rate"] = rate


# Ordinary traffic measured again while one client sends maximal bodies (bench/attack.py) to the same gateway.
UNDER_ATTACK = [("chat c=10 under attack", False, 10), ("stream c=10 under attack (TTFT)", True, 10)]


def measure_under_attack(targets: list[Target], duration: float) -> None:
    """Each driftgate target's chat and stream rows again, beside ``bench.attack`` (one connection), and the
    same rows without it for the ratio; the attacker's answers go in the result."""
    for target in targets:
        if not target.name.startswith("driftgate"):
            continue
        base = target.url.removesuffix("/v1/chat/completions")
        for name, stream, concurrency in UNDER_ATTACK:
            alone = load(target, stream, duration, concurrency)
            attacker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.attack",
                    "--base",
                    base,
                    "--model",
                    target.model,
                    "--duration",
                    str(duration + 2),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(1)  # the attack under way before the ordinary load starts
            console.print(f"  {target.name}: {name}")
            result = load(target, stream, duration, concurrency)
            out, _ = attacker.communicate(timeout=300)
            result["attacker"] = json.loads(out or "{}").get("statuses")
            result["alone"] = {"rps": alone["rps"], "p99_ms": alone["p99_ms"]}
            target.results[name] = result


def table(targets: list[Target]) -> Table:
    direct = targets[0]
    table = Table(title="requests/s, p50 / p99 latency in ms (stream: time to first token); added = minus direct p50")
    table.add_column("scenario")
    for target in targets:
        table.add_column(target.name, justify="right")
    for name in [*[s[0] for s in SCENARIOS], "chat open-loop", *[s[0] for s in UNDER_ATTACK]]:
        cells = []
        for target in targets:
            result = target.results.get(name)
            if result is None:
                cells.append("-")
                continue
            if result["p50_ms"] is None:  # nothing answered: every request failed
                cells.append(f"[red]{result['errors']} errors, none answered[/]")
                continue
            cell = f"{result['rps']:,.0f} rps  {result['p50_ms']:.2f} / {result['p99_ms']:.2f}"
            if target is not direct and name in direct.results:
                cell += f"  (+{result['p50_ms'] - direct.results[name]['p50_ms']:.2f})"
            if "alone" in result and result["alone"]["p99_ms"]:
                cell += f"  (alone {result['alone']['rps']:,.0f} rps, p99 {result['alone']['p99_ms']:.2f})"
            if result["errors"]:
                cell += f"  [red]{result['errors']} errors[/]"
            cells.append(cell)
        table.add_row(name, *cells)
    tokens = []
    for target in targets:
        result = target.results.get("stream c=50 (TTFT)", {})
        tokens.append("-" if not result.get("tokens_per_s") else f"{result['tokens_per_s']:,.0f}")
    table.add_row("stream c=50 tokens/s delivered", *tokens)
    overhead = []
    for target in targets:
        result = target.results.get("chat c=1", {})
        p50 = result.get("overhead_p50_ms")
        overhead.append("-" if p50 is None else f"{p50:.3f} / {result['overhead_p99_ms']:.3f}")
    table.add_row("own overhead header c=1 (p50/p99 ms)", *overhead)
    return table


def ratios(report: dict) -> dict[str, float]:
    """Figures that survive a noisy shared machine: driftgate relative to the upstream in the same run."""
    by_name = {t["name"]: t["results"] for t in report["targets"]}
    direct = by_name["direct"]
    return {
        f"{name}: {scenario} rps / direct": results[scenario]["rps"] / direct[scenario]["rps"]
        for name, results in by_name.items()
        if name.startswith("driftgate")
        for scenario, _, _ in SCENARIOS
        if scenario in results and scenario in direct
    }


def versus_litellm(targets: list[Target]) -> Table | None:
    litellm = next((t for t in targets if t.name.startswith("LiteLLM")), None)
    if litellm is None:
        return None
    table = Table(title="throughput as a multiple of LiteLLM's (same run, same upstream)")
    table.add_column("driftgate")
    scenarios = [name for name, _, concurrency in SCENARIOS if concurrency > 1]
    for name in scenarios:
        table.add_column(name, justify="right")
    for target in targets:
        if target.name.startswith("driftgate"):
            table.add_row(
                target.name,
                *[
                    f"{target.results[n]['rps'] / litellm.results[n]['rps']:.1f}x" if litellm.results[n]["rps"] else "-"
                    for n in scenarios
                ],
            )
    return table


def compare(previous_path: Path, report: dict) -> int:
    previous = json.loads(previous_path.read_text())
    old, new = ratios(previous), ratios(report)
    slower = 0
    check = Table(title=f"regression check against {previous_path}")
    for column in ("ratio", "before", "now", "change"):
        check.add_column(column)
    for key in old.keys() & new.keys():
        change = new[key] / old[key] - 1
        flag = change < -0.10
        slower += flag
        check.add_row(key, f"{old[key]:.3f}", f"{new[key]:.3f}", f"{'[red]' if flag else ''}{change:+.0%}")
    console.print(check)
    return 1 if slower else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per scenario")
    parser.add_argument("--workers", type=int, default=1, help="driftgate server workers")
    parser.add_argument(
        "--variants", default="bare,full", help=f"driftgate configurations, comma-separated: {', '.join(VARIANTS)}"
    )
    parser.add_argument("--litellm-venv", type=Path, default=None)
    parser.add_argument(
        "--attack", action="store_true", help="also measure chat/stream c=10 while one client sends maximal bodies"
    )
    parser.add_argument("--compare", type=Path, default=None, help="earlier JSON to check for >10%% slowdowns")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    command = "python -m bench.gateway " + " ".join(sys.argv[1:])
    machine = describe(command, ["driftgate", "litestar", "granian", "aiohttp", "msgspec"])
    if args.litellm_venv:
        version = subprocess.run(
            [
                str(args.litellm_venv / "bin" / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('litellm'))",
            ],
            capture_output=True,
            text=True,
        )
        machine["versions"]["litellm"] = version.stdout.strip() or "unknown"
    console.print(machine)
    with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        mock_url = start_mock(stack)
        targets = [Target("direct", f"{mock_url}/v1/chat/completions")]
        for variant in args.variants.split(","):
            targets.append(start_driftgate(stack, mock_url, workdir, args.workers, variant))
        if args.litellm_venv:
            targets.append(start_litellm(stack, args.litellm_venv, mock_url, workdir))
        measure(targets, args.duration)
        if args.attack:
            measure_under_attack(targets, args.duration)
    report = {
        "machine": machine,
        "time": time.time(),
        "targets": [{"name": t.name, "results": t.results} for t in targets],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    console.print(table(targets))
    multiples = versus_litellm(targets)
    if multiples is not None:
        console.print(multiples)
    status = compare(args.compare, report) if args.compare and args.compare.exists() else 0
    console.print(f"wrote {args.output}")
    return status


if __name__ == "__main__":
    sys.exit(main())
