"""The model tier (per-category heads on the MiniLM sentence encoder) against the fast tier (today's default
toxicity guard: Jigsaw BiLSTM + threat/self-harm rules), and the two combined, on sources they never saw.

    python -m bench.guards_semantic [--benign 4000] [--target-fpr 0.05] [--train project-written]
                                    [--out bench/results/guards_semantic.json]

Two evaluations, neither used to fit or to pick a threshold (thresholds come from out-of-fold scores of the
training texts, per category and benign group: guards/semantic/train.py):
* leave one source out: the heads are trained on every training source but one and tested on that one
  (its positives; its benign texts where it has any, else held-back everyday prompts for the FPR);
* held-out sources: trained on the ``--train`` sources and everyday prompts, tested on sources kept apart
  for evaluation only (guards/semantic/sources.py: the Kaggle insults test split, a ToxiGen sample, benign
  "edgy" questions, and the labeled prompts written apart from the project's own set).

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

import msgspec
import numpy as np
from rich.console import Console
from rich.table import Table

from bench.machine import describe
from guards import GuardModels, Guards, GuardsSettings
from guards.normalize import normalize
from guards.semantic.encoder import SentenceEncoder
from guards.semantic.sources import CATEGORIES, LabeledText, toxicity_sources, written
from guards.semantic.train import train_heads

console = Console()
RESULTS = Path("bench/results/guards_semantic.json")
# Written apart from the training set, by a writer who never saw it; never trained on, never used for a threshold.
WRITTEN_EVAL = Path("bench/data/guards_written_eval.jsonl")
# Cosine similarity from which a test text counts as a near-copy of a training text.
NEAR_COPY = 0.9
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


def _grouped(row: LabeledText, source: str) -> LabeledText:
    return row if row.domain else msgspec.structs.replace(row, domain=source)


def fast_blocks(guards: Guards, texts: list[str]) -> np.ndarray:
    toxicity = guards.input.guard("toxicity")
    assert toxicity is not None
    with console.status(f"fast tier over {len(texts)} texts"):
        return np.array([toxicity.inspect(normalize(text).text)[0].action == "block" for text in texts])


def rates(caught: np.ndarray, rows: list[LabeledText]) -> dict[str, dict[str, float]]:
    """{category or "benign" or "benign:<domain>": {"n", "rate"}}: TPR per category, FPR over benign texts
    (and per benign domain, where the source names them)."""
    out: dict[str, dict[str, float]] = {}
    domains = sorted({r.domain for r in rows if not r.categories and r.domain})
    for category in (*CATEGORIES, "benign", *(f"benign:{d}" for d in domains)):
        if category.startswith("benign:"):
            mask = np.array([not r.categories and r.domain == category[7:] for r in rows])
        else:
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
    heads = train_heads(
        train_vectors,
        [r.categories for r in train_rows],
        CATEGORIES,
        target_fpr=target_fpr,
        groups=[r.domain for r in train_rows],
    )
    # Decontaminated: a test text with a near-copy among the training texts (independent writers converge on
    # common questions) says nothing about unseen text, so it is left out and counted.
    unseen = np.ones(len(test_rows), dtype=bool)
    for start in range(0, len(test_rows), 512):
        unseen[start : start + 512] = (test_vectors[start : start + 512] @ train_vectors.T).max(axis=1) < NEAR_COPY
    test_rows = [row for row, keep in zip(test_rows, unseen, strict=True) if keep]
    test_vectors, test_fast = test_vectors[unseen], test_fast[unseen]
    model = (heads.scores(test_vectors) >= heads.thresholds).any(axis=1)
    return {
        "source": name,
        "near_copies_left_out": int((~unseen).sum()),
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
            kind = "FPR" if category.startswith("benign") else "TPR"
            cells = [f"{result[tier][category]['rate']:.3f}" for tier in ("fast", "model", "either")]
            view.add_row(result["source"], f"{category} ({kind})", str(fast["n"]), *cells)
    return view


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benign", type=int, default=4000, help="everyday benign prompts sampled for training")
    parser.add_argument("--target-fpr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--home", type=Path, default=Path(".driftgate"), help="where the exported models are")
    parser.add_argument(
        "--train",
        nargs="+",
        default=["project-written"],
        help="training sources of the held-out evaluation (everyday prompts are always in)",
    )
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
    held_out["written-apart"] = written(WRITTEN_EVAL)

    def prepared(rows: list[LabeledText]) -> tuple[list[LabeledText], np.ndarray, np.ndarray]:
        texts = [r.text for r in rows]
        return rows, embed_cached(encoder, texts), fast_blocks(guards, texts)

    # Each text's group for the per-group thresholds: its written domain, else the source it comes from.
    sources = {name: prepared([_grouped(row, name) for row in rows]) for name, rows in training.items()}
    benign_train_set = prepared([_grouped(row, "everyday") for row in benign_train])
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
    rows, vectors, _ = joined([benign_train_set, *(sources[name] for name in args.train)])
    held = [
        evaluate(name, rows, vectors, *prepared(test_rows), args.target_fpr) for name, test_rows in held_out.items()
    ]
    held.append(evaluate("everyday (held back)", rows, vectors, *benign_test_set, args.target_fpr))
    console.print(table(loso, "Leave one source out: caught (TPR per category) and false blocks (FPR)"))
    console.print(table(held, f"Held-out sources (trained on {', '.join(args.train)} and everyday prompts)"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"machine": machine, "train": args.train, "leave_one_out": loso, "held_out": held}, indent=2)
    )
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
