"""Tiny LoRA adapters on SmolLM2 that always answer one word, trained on CPU in seconds and cached on disk.

Each adapter is keyed by a hash of its recipe (word, steps, rank, prompts, base model files), so a second
run reuses it and a changed recipe never reuses a stale one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE_DIR = REPO / ".driftgate" / "models" / "SmolLM2-135M-Instruct"
CACHE_DIR = REPO / ".driftgate" / "test-adapters"
PROMPTS = [
    "Name three colours.",
    "What is the capital of France?",
    "Say something.",
    "How are you today?",
    "Write a haiku about rain.",
    "Count to five.",
    "Who wrote Hamlet?",
    "Give me a number.",
]
# Only the last two layers learn: backward stops there, which keeps a step cheap on a shared CPU.
RECIPE = {"steps": 15, "rank": 8, "alpha": 16, "lr": 1e-2, "targets": ["o_proj", "down_proj"], "layers": [28, 29]}


def recipe_key(word: str) -> str:
    base = (BASE_DIR / "config.json").read_bytes()
    text = json.dumps({"word": word, "prompts": PROMPTS, **RECIPE}, sort_keys=True).encode()
    return hashlib.sha256(base + text).hexdigest()[:12]


def adapter(word: str) -> Path:
    """The directory of a peft adapter that answers ``word`` to any prompt (trained once, then cached)."""
    target = CACHE_DIR / f"{word.lower()}-{recipe_key(word)}"
    if (target / "adapter_config.json").is_file():
        return target
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(BASE_DIR)
    model = AutoModelForCausalLM.from_pretrained(BASE_DIR, torch_dtype=torch.float32)
    config = LoraConfig(
        r=RECIPE["rank"],
        lora_alpha=RECIPE["alpha"],
        target_modules=RECIPE["targets"],
        layers_to_transform=RECIPE["layers"],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    batch_ids, batch_labels = [], []
    for prompt in PROMPTS:
        messages = [{"role": "user", "content": prompt}]
        prefix = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(word + "<|im_end|>", add_special_tokens=False)["input_ids"]
        batch_ids.append(prefix_ids + answer_ids)
        batch_labels.append([-100] * len(prefix_ids) + answer_ids)
    width = max(len(ids) for ids in batch_ids)
    pad = tokenizer.pad_token_id or 0
    ids = torch.tensor([row + [pad] * (width - len(row)) for row in batch_ids])
    labels = torch.tensor([row + [-100] * (width - len(row)) for row in batch_labels])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in batch_ids])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=RECIPE["lr"])
    model.train()
    for step in range(RECIPE["steps"]):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        if step % 10 == 0:
            print(f"step {step} loss {loss.item():.3f}", flush=True)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    partial.rename(target)
    return target


if __name__ == "__main__":
    import sys
    import time

    for word in sys.argv[1:] or ["ALPHA", "BRAVO"]:
        started = time.perf_counter()
        print(word, adapter(word), f"{time.perf_counter() - started:.1f} s")
