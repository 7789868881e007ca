"""Embedding throughput, drift-check time and detection quality per Evidently method.

    python -m bench.drift            # about 3 minutes on 2 cores

Prints the tables with the machine, versions and command, and writes bench/results/drift.json. The prompts
are the deterministic topic corpora of demo/corpora.py: the reference is support-desk
traffic, "same topic" windows are a different draw of it, shifts go to programming or cooking.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from bench.machine import describe
from demo.corpora import prompts
from monitor.drift import DriftMonitor, DriftSettings
from monitor.drift_methods import CALIBRATED, METHODS, MethodSettings, drift_score, sample_rows
from monitor.embedder import Embedder, EmbedderSettings
from monitor.embedder_export import ensure_embedder
from monitor.reference import ReferenceMeta, ReferenceSet

MODEL_DIR = Path(".driftgate/models/all-MiniLM-L6-v2-onnx")
RESULTS = Path("bench/results/drift.json")
WINDOW = 200
NULL_WINDOWS = 50
MIX_SHARES = [0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5, 0.6, 0.6]
console = Console(width=150)


def throughput(texts: list[str]) -> list[dict]:
    rows = []
    for threads in (1, 2):
        for batch in (16, 32, 64):
            embedder = Embedder(EmbedderSettings(model_dir=str(MODEL_DIR), threads=threads, batch_size=batch))
            embedder.embed(texts[:64])  # warm-up
            started = time.perf_counter()
            embedder.embed(texts)
            rate = len(texts) / (time.perf_counter() - started)
            rows.append({"threads": threads, "batch": batch, "prompts_per_s": rate})
    return rows


def check_time(current: np.ndarray, reference: np.ndarray) -> list[dict]:
    """One check of 1,000 current against 5,000 reference embeddings, per method, sampled and not."""
    rows = []
    for name, kind in METHODS.items():
        for limit in (1000, len(reference)):
            if name in ("model", "ratio") and limit != 1000:
                continue  # their cost is linear in the reference: the sampled figure says enough
            method = kind()
            times = []
            for _ in range(3):
                started = time.perf_counter()
                drift_score(current, sample_rows(reference, limit), method)
                times.append(time.perf_counter() - started)
            rows.append({"method": name, "reference_rows": limit, "seconds": min(times)})
    return rows


def evidently_default_alarms(reference: np.ndarray, windows: list[np.ndarray]) -> dict[str, int]:
    """How many same-topic windows Evidently's own default thresholds call drifted."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, kind in METHODS.items():
            method = kind()
            out[name] = sum(bool(method(pd.DataFrame(w), pd.DataFrame(reference))[1]) for w in windows)
    return out


def run_stream(method: str, reference: np.ndarray, windows: list[np.ndarray]) -> tuple[list[float], list[int]]:
    """Feed windows through a DriftMonitor; return each window's score and the indexes of fired alerts."""
    monitor = DriftMonitor(DriftSettings(method=MethodSettings(name=method), window_size=WINDOW))
    meta = ReferenceMeta(alias="support", version="1", embedder="bench", count=len(reference), source="", created_at=0)
    monitor.set_reference("support", ReferenceSet(meta=meta, embeddings=reference))
    scores, fired = [], []
    for index, rows in enumerate(windows):
        (window,) = monitor.observe_many([("support", f"{index}-{i}", row) for i, row in enumerate(rows)])
        result = monitor.score(window)
        scores.append(result.score)
        event = monitor.apply(result)
        if event is not None and event.transition == "fired":
            fired.append(index)
    return scores, fired


def mixed(rng, usual: np.ndarray, new: np.ndarray, share: float) -> np.ndarray:
    k = round(share * WINDOW)
    return np.vstack([usual[rng.choice(len(usual), WINDOW - k, replace=False)], new[rng.choice(len(new), k)]])


def detection(reference: np.ndarray, pools: dict[str, np.ndarray]) -> list[dict]:
    rng = np.random.default_rng(0)
    null = [mixed(rng, pools["support"], pools["programming"], 0.0) for _ in range(NULL_WINDOWS)]
    shifts = {
        topic: [mixed(rng, pools["support"], pools[topic], 1.0) for _ in range(5)]
        for topic in ("programming", "cooking")
    }
    mix = [mixed(rng, pools["support"], pools["programming"], share) for share in MIX_SHARES]
    defaults = evidently_default_alarms(reference, null)
    rows = []
    for method in METHODS:
        null_scores, null_fired = run_stream(method, reference, null)
        row = {
            "method": method,
            "threshold": CALIBRATED[method].fire,
            "clear_threshold": CALIBRATED[method].clear,
            "null_mean": float(np.mean(null_scores)),
            "null_max": float(np.max(null_scores)),
            "null_windows_over": int(sum(s > CALIBRATED[method].fire for s in null_scores)),
            "null_alerts": len(null_fired),
            "evidently_default_null_windows_flagged": defaults[method],
        }
        for topic, windows in shifts.items():
            _, fired = run_stream(method, reference, windows)
            row[f"windows_to_confirm_{topic}"] = fired[0] + 1 if fired else None
        _, fired = run_stream(method, reference, mix)
        row["mix_confirmed_at_share"] = MIX_SHARES[fired[0]] if fired else None
        rows.append(row)
    return rows


def main() -> None:
    command = "python -m bench.drift"
    machine = describe(command, ["onnxruntime", "tokenizers", "evidently", "scikit-learn", "numpy", "pandas"])
    ensure_embedder(MODEL_DIR)
    embedder = Embedder(EmbedderSettings(model_dir=str(MODEL_DIR), threads=2))
    short = [p for topic in ("support", "cooking", "programming", "travel") for p in prompts(topic, 250, 7)]
    with console.status("Embedding the corpora"):
        reference_full = embedder.embed(prompts("support", 5000, 0))
        pools = {
            "support": embedder.embed(prompts("support", 1500, 1)),
            "programming": embedder.embed(prompts("programming", 800, 1)),
            "cooking": embedder.embed(prompts("cooking", 600, 1)),
        }
    with console.status("Embedding throughput"):
        speed = throughput(short)
    with console.status("Check time, 1,000 vs 5,000"):
        current = np.vstack([pools["support"][:500], pools["programming"][:500]])
        timing = check_time(current, reference_full)
    reference = sample_rows(reference_full, DriftSettings().reference_sample)
    with console.status("Detection: same topic, shifts, gradual mix"):
        quality = detection(reference, pools)
    results = {"machine": machine, "throughput": speed, "check_time": timing, "detection": quality}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    report(results)


def report(results: dict) -> None:
    machine = results["machine"]
    where = f"{machine['cores']} cores, {machine['cpu']}, Python {machine['python']}"
    console.print(f"[bold]{machine['command']}[/] on {where}")
    console.print(", ".join(f"{name} {version}" for name, version in machine["versions"].items()))
    speed = Table(title="Embedding throughput (1,000 short prompts, all-MiniLM-L6-v2 ONNX, fp32)")
    for column in ("threads", "batch", "prompts/s"):
        speed.add_column(column, justify="right")
    for row in results["throughput"]:
        speed.add_row(str(row["threads"]), str(row["batch"]), f"{row['prompts_per_s']:.0f}")
    console.print(speed)
    timing = Table(title="One drift check: 1,000 current vs 5,000 reference embeddings (best of 3)")
    for column in ("method", "reference rows used", "seconds"):
        timing.add_column(column, justify="right")
    for row in results["check_time"]:
        timing.add_row(row["method"], str(row["reference_rows"]), f"{row['seconds']:.3f}")
    console.print(timing)
    table = Table(title=f"Detection, windows of {WINDOW} vs a 1,000-prompt reference; confirm after 2 windows")
    columns = ["method", "threshold", "null mean / max", f"over / alerts in {NULL_WINDOWS} same-topic"]
    columns += ["Evidently default: flagged", "to confirm → programming", "→ cooking", "mix confirmed at"]
    for column in columns:
        table.add_column(column, justify="right")
    for row in results["detection"]:
        table.add_row(
            row["method"],
            f"{row['threshold']:g}",
            f"{row['null_mean']:.4f} / {row['null_max']:.4f}",
            f"{row['null_windows_over']} / {row['null_alerts']}",
            f"{row['evidently_default_null_windows_flagged']} / {NULL_WINDOWS}",
            str(row["windows_to_confirm_programming"]),
            str(row["windows_to_confirm_cooking"]),
            f"{row['mix_confirmed_at_share']:.0%}" if row["mix_confirmed_at_share"] else "never",
        )
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
