"""Routing by content (``model: "auto"``): which alias it picks on held-out prompts, and what it costs.

    python -m bench.auto_route       # about a minute on 2 cores

The three adapters' references are their training prompts (demo/corpora.py's cooking, programming and travel
topics, plus support as a fourth alias that no held-out prompt belongs to); the held-out prompts in
bench/data/auto_route_heldout.jsonl were written separately, in phrasings the templates never produce, with
twenty off-topic prompts that should fall back to the base model. Latency is the choice alone (one
matrix-vector product and a partial sort per alias) for 4, 64 and 1,000 aliases of 200 reference prompts
each, beside the prompt's embedding, which the choice needs first. Writes bench/results/auto_route.json.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.machine import describe
from demo.corpora import prompts
from gateway.adapters.content_routing import (
    FALLBACK,
    AutoRouteSettings,
    ContentIndex,
    ContentRouter,
    prototypes_of,
)
from monitor.embedder import Embedder, EmbedderSettings
from monitor.embedder_export import ensure_embedder
from monitor.reference import read_prompts
from training.prepare import GENERAL_PATH

MODEL_DIR = Path(".driftgate/models/all-MiniLM-L6-v2-onnx")
HELD_OUT = Path("bench/data/auto_route_heldout.jsonl")
RESULTS = Path("bench/results/auto_route.json")
ALIASES = ("cooking", "programming", "travel", "support")
console = Console(width=150)


def quality(router: ContentRouter, rows: list[dict], vectors: np.ndarray) -> dict:
    on_topic = [(row, vector) for row, vector in zip(rows, vectors, strict=True) if row["topic"] != "off_topic"]
    off_topic = [vector for row, vector in zip(rows, vectors, strict=True) if row["topic"] == "off_topic"]
    chosen = [router.choose(vector).alias for _, vector in on_topic]
    right = sum(alias == row["topic"] for (row, _), alias in zip(on_topic, chosen, strict=True))
    fallback = sum(alias is None for alias in chosen)
    off_fallback = sum(router.choose(vector).alias is None for vector in off_topic)
    return {
        "on_topic": len(on_topic),
        "right": right,
        "wrong": len(on_topic) - right - fallback,
        "fell_back": fallback,
        "accuracy_when_routed": right / max(1, len(on_topic) - fallback),
        "off_topic": len(off_topic),
        "off_topic_fallback_rate": off_fallback / max(1, len(off_topic)),
    }


def choice_latency(references: dict[str, np.ndarray], queries: np.ndarray, aliases: int) -> dict:
    """p50/p99 of ``choose`` over ``aliases`` aliases (the real ones' prototypes, then noisy copies of them)."""
    rng = np.random.default_rng(0)
    real = [
        (alias, prototypes_of(reference, AutoRouteSettings().prototypes)) for alias, reference in references.items()
    ]
    grown = dict(real)
    for index in range(aliases - len(real)):
        name, base = real[index % len(real)]
        noisy = base + rng.normal(0, 0.05, base.shape).astype(np.float32)
        grown[f"{name}-{index}"] = noisy
    router = ContentRouter(AutoRouteSettings(), embed=lambda texts: queries[: len(texts)])
    router.index = ContentIndex(grown)
    timings = []
    for _ in range(5):
        for vector in queries:
            started = time.perf_counter()
            router.choose(vector)
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {
        "aliases": len(grown),
        "prototype_rows": int(router.index.matrix.shape[0]),
        "p50_ms": statistics.median(timings),
        "p99_ms": timings[int(len(timings) * 0.99) - 1],
    }


def main() -> None:
    embedder = Embedder(EmbedderSettings(model_dir=str(ensure_embedder(MODEL_DIR)), threads=1))
    references = {alias: embedder.embed(prompts(alias, 200, seed=0)) for alias in ALIASES}
    fallback = embedder.embed(list(dict.fromkeys(read_prompts(GENERAL_PATH))))
    rows = [json.loads(line) for line in HELD_OUT.read_text().splitlines() if line.strip()]
    texts = [row["prompt"] for row in rows]
    embed_ms = []
    for text in texts:
        started = time.perf_counter()
        embedder.embed([text])
        embed_ms.append((time.perf_counter() - started) * 1000)
    vectors = embedder.embed(texts)

    settings = AutoRouteSettings()
    variants = {
        "default (fallback prompts, margin)": (settings, True),
        "no fallback prompts": (settings, False),
        "no margin, no floor": (AutoRouteSettings(min_similarity=0.0, margin=0.0), True),
        "every prompt, no prototypes": (AutoRouteSettings(prototypes=10_000), True),
    }
    results: dict = {
        "machine": describe("python -m bench.auto_route", ["onnxruntime", "numpy"]),
        "quality": {},
        "latency": [],
    }
    table = Table(title="auto routing on held-out prompts (3 topics x 15, 20 off-topic; 4 aliases)")
    for column in ("variant", "right", "wrong", "fell back", "accuracy when routed", "off-topic fallback"):
        table.add_column(column)
    for name, (variant, with_fallback) in variants.items():
        router = ContentRouter(variant, embedder.embed, fallback if with_fallback else None)
        chosen = {**references, **({FALLBACK: fallback} if with_fallback else {})}
        router.index = ContentIndex(
            {alias: prototypes_of(rows_, variant.prototypes) for alias, rows_ in chosen.items()}
        )
        found = results["quality"][name] = quality(router, rows, vectors)
        table.add_row(
            name,
            f"{found['right']}/{found['on_topic']}",
            str(found["wrong"]),
            str(found["fell_back"]),
            f"{found['accuracy_when_routed']:.2f}",
            f"{found['off_topic_fallback_rate']:.2f}",
        )
    console.print(table)

    latency = Table(title="time to choose, beyond the embedding (one core, numpy)")
    for column in ("aliases", "prototypes", "choose p50 ms", "choose p99 ms"):
        latency.add_column(column)
    for count in (4, 64, 1000):
        found = choice_latency(references, vectors, count)
        results["latency"].append(found)
        cells = (found["aliases"], found["prototype_rows"], f"{found['p50_ms']:.3f}", f"{found['p99_ms']:.3f}")
        latency.add_row(*map(str, cells))
    console.print(latency)
    embed_ms.sort()
    results["embed_p50_ms"] = statistics.median(embed_ms)
    console.print(f"embedding one held-out prompt first: p50 {results['embed_p50_ms']:.2f} ms (ONNX MiniLM, 1 thread)")
    RESULTS.write_text(json.dumps(results, indent=2))
    console.print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
