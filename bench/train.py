"""Training throughput and peak memory per method on the embedded default base model.

    python -m bench.train            # a few minutes on 2 cores

Each method runs in its own child process, so its peak RSS is its own. A step is one optimizer step of
``BATCH`` chat-formatted records from training/data/general.jsonl (loss on the assistant tokens); tokens/s
counts the non-padding tokens of the timed steps, after one warm-up step. ``base loss`` is the loss on those
records before any training: for QLoRA it shows whether the 4-bit NF4 model still computes the same model.
Writes bench/results/train.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.machine import describe

BASE = Path(".driftgate/models/SmolLM2-135M-Instruct")
RESULTS = Path("bench/results/train.json")
METHODS = ("lora", "dora", "qlora")
BATCH, STEPS = 4, 4
console = Console(width=150)


def one(method: str) -> dict:
    """Measure ``method`` in this process (the child)."""
    import torch
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from training import models
    from training.config import LoraSettings
    from training.data import read_jsonl
    from training.evaluate import eval_loss
    from training.formatting import collate, encode
    from training.prepare import GENERAL_PATH
    from training.run import peak_rss_mib

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    examples = [encode(e, tokenizer) for e in read_jsonl(GENERAL_PATH)[0]]
    where = models.device()
    used, note = models.resolve_method(method, where)
    started = time.perf_counter()
    model = models.load(str(BASE), used, LoraSettings(), where, gradient_checkpointing=False)
    load_s = time.perf_counter() - started
    base_loss = eval_loss(model, examples[:16], tokenizer.eos_token_id, BATCH)
    optimizer = models.optimizer(model, used, 1e-4)
    model.train()
    tokens, seconds = 0, 0.0
    for step in range(STEPS + 1):
        batch = collate(examples[step * BATCH : (step + 1) * BATCH], tokenizer.eos_token_id)
        begun = time.perf_counter()
        model(**{k: v.to(where) for k, v in batch.items()}).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:  # the first step warms up kernels and allocators
            seconds += time.perf_counter() - begun
            tokens += int(batch["attention_mask"].sum())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "method": method,
        "ran_as": used,
        "note": note,
        "device": str(where),
        "load_s": round(load_s, 2),
        "base_loss": round(base_loss, 4),
        "trainable_params": trainable,
        "tokens_per_s": round(tokens / seconds, 1),
        "s_per_step": round(seconds / STEPS, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def main() -> None:
    rows = []
    for method in METHODS:
        child = subprocess.run(
            [sys.executable, "-m", "bench.train", "--one", method], capture_output=True, text=True, check=False
        )
        if child.returncode:
            rows.append({"method": method, "error": child.stderr.strip().splitlines()[-1]})
        else:
            rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    header = describe("python -m bench.train", ["torch", "transformers", "peft", "bitsandbytes"])
    table = Table(title=f"Training throughput, {BASE.name}, batch {BATCH}, {STEPS} timed steps")
    for column in ("method", "ran as", "base loss", "trainable", "tokens/s", "s/step", "peak RSS MiB", "load s"):
        table.add_column(column, justify="right")
    for row in rows:
        if "error" in row:
            table.add_row(row["method"], "error: " + row["error"][:80], *[""] * 6)
            continue
        table.add_row(
            row["method"],
            row["ran_as"],
            f"{row['base_loss']:.4f}",
            f"{row['trainable_params']:,}",
            f"{row['tokens_per_s']:.0f}",
            f"{row['s_per_step']:.2f}",
            f"{row['peak_rss_mib']:.0f}",
            f"{row['load_s']:.1f}",
        )
    console.print(header)
    console.print(table)
    RESULTS.write_text(json.dumps({"machine": header, "batch": BATCH, "steps": STEPS, "results": rows}, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one(sys.argv[2])))
    else:
        main()
