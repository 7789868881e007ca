"""The model tier (per-category heads on the MiniLM sentence encoder) against the fast tier (today's default
toxicity guard: Jigsaw BiLSTM + threat/self-harm rules), and the two combined, on sources they never saw.

    python -m bench.guards_semantic [--benign 4000] [--target-fpr 0.05] [--out bench/results/guards_semantic.json]

Two evaluations, neither used to fit or to pick a threshold (thresholds come from a validation split of the
training benign texts, per category):
* leave one source out: the heads are trained on every training source but one and tested on that one
  (its positives; its benign texts where it has any, else held-back everyday prompts for the FPR);
* held-out sources: trained on all training sources, tested on sources kept apart for evaluation only
  (guards/semantic/sources.py: the Kaggle insults test split, a ToxiGen sample, benign "edgy" questions).

A text counts as caught when the tier blocks it (any category): what a user of the gateway sees. TPR is per
labeled category, FPR over benign texts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.machine import describe
from guards import GuardModels, Guards, GuardsSettings
from guards.normalize import normalize
from guards.semantic.encoder import SentenceEncoder
from guards.semantic.sources import CATEGORIES, LabeledText, toxicity_sources
from guards.semantic.train import train_heads

console = Console()
RESULTS = Path("bench/results/guards_semantic.json")
CACHE = Path.home() / ".cache" / "driftgate" / "bench-semantic"


def embed_cached(encoder: SentenceEncoder, texts: list[str]) -> np.ndarray:
    """Embeddings of ``texts``, cached by their content (embedding 10k texts takes about a minute here)."""
    key = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:24]
    path = CACHE / f"{encoder.directory.name}-{key}.npy"
    if path.exists():
        return np.load(path)
    started = time.perf_counter()
    with console.status(f"embedding {len(texts)} texts"):
        vectors = encoder.embed([normalize(text).text for text in texts])
    console.print(f"  embedded {len(texts)} texts in {time.perf_counter() - started:.0f} s")
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def fast_blocks(guards: Guards, texts: list[str]) -> np.ndarray:
    toxicity = guards.input.guard("toxicity")
    assert toxicity is not None
    with console.status(f"fast tier over {len(texts)} texts"):
        return np.array([toxicity.inspect(normalize(text).text)[0].action == "block" for text in texts])


def rates(caught: np.ndarray, rows: list[LabeledText]) -> dict[str, dict[str, float]]:
    """{category or "benign": {"n", "rate"}}: TPR per category, FPR over benign texts."""
    out: dict[str, dict[str, float]] = {}
    for category in (*CATEGORIES, "benign"):
        mask = np.array([(not r.categories) if category == "benign" else category in r.categories for r in rows])
        if mask.sum():
            out[category] = {"n": int(mask.sum()), "rate": float(caught[mask].mean())}
    return out


def evaluate(
    name: str,
    train_rows: list[LabeledText],
    train_vectors: np.ndarray,
    test_rows: list[LabeledText],
    test_vectors: np.ndarray,
    test_fast: np.ndarray,
    target_fpr: float,
) -> dict:
    heads = train_heads(train_vectors, [r.categories for r in train_rows], CATEGORIES, target_fpr=target_fpr)
    model = (heads.scores(test_vectors) >= heads.thresholds).any(axis=1)
    return {
        "source": name,
        "fast": rates(test_fast, test_rows),
        "model": rates(model, test_rows),
        "either": rates(test_fast | model, test_rows),
    }


def table(results: list[dict], title: str) -> Table:
    view = Table(title=title)
    for column in ("source", "category", "n", "fast tier", "model tier", "either"):
        view.add_column(column, justify="left" if column in ("source", "category") else "right")
    for result in results:
        for category, fast in result["fast"].items():
            kind = "FPR" if category == "benign" else "TPR"
            cells = [f"{result[tier][category]['rate']:.3f}" for tier in ("fast", "model", "either")]
            view.add_row(result["source"], f"{category} ({kind})", str(fast["n"]), *cells)
    return view


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benign", type=int, default=4000, help="everyday benign prompts sampled for training")
    parser.add_argument("--target-fpr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--home", type=Path, default=Path(".driftgate"), help="where the exported models are")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    machine = describe("python -m bench.guards_semantic " + " ".join(sys.argv[1:]), ["onnxruntime", "scikit-learn"])
    from guards.injection_export import ensure_injection_model
    from guards.jigsaw_export import ensure_jigsaw_model
    from monitor.embedder_export import ensure_embedder

    guard_dir = args.home / "models" / "guards"
    ensure_jigsaw_model(guard_dir)
    ensure_injection_model(guard_dir)
    encoder = SentenceEncoder(ensure_embedder(args.home / "models" / "all-MiniLM-L6-v2-onnx"))
    guards = Guards(GuardsSettings(), GuardModels(guard_dir))

    rng = np.random.default_rng(args.seed)
    training = toxicity_sources()
    everyday = training.pop("everyday-prompts")
    picked = rng.permutation(len(everyday))
    benign_train = [everyday[i] for i in picked[: args.benign]]
    benign_test = [everyday[i] for i in picked[args.benign : args.benign + 1000]]
    held_out = toxicity_sources(held_out=True)

    def prepared(rows: list[LabeledText]) -> tuple[list[LabeledText], np.ndarray, np.ndarray]:
        texts = [r.text for r in rows]
        return rows, embed_cached(encoder, texts), fast_blocks(guards, texts)

    sources = {name: prepared(rows) for name, rows in training.items()}
    benign_train_set = prepared(benign_train)
    benign_test_set = prepared(benign_test)

    def joined(parts: list[tuple[list[LabeledText], np.ndarray, np.ndarray]]):
        return (
            [row for part in parts for row in part[0]],
            np.concatenate([part[1] for part in parts]),
            np.concatenate([part[2] for part in parts]),
        )

    loso = []
    for name in sources:
        rows, vectors, _ = joined([benign_train_set, *(part for other, part in sources.items() if other != name)])
        test = sources[name]
        if not any(not r.categories for r in test[0]):  # no benign texts of its own: everyday ones for the FPR
            test = joined([test, benign_test_set])
        loso.append(evaluate(name, rows, vectors, *test, args.target_fpr))
    rows, vectors, _ = joined([benign_train_set, *sources.values()])
    held = [
        evaluate(name, rows, vectors, *prepared(test_rows), args.target_fpr) for name, test_rows in held_out.items()
    ]
    console.print(table(loso, "Leave one source out: caught (TPR per category) and false blocks (FPR)"))
    console.print(table(held, "Held-out sources (trained on every training source)"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "leave_one_out": loso, "held_out": held}, indent=2))
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
