"""Adapter fixtures: peft-shaped adapter directories on disk, and
settings for a test gateway with adapters on over SQLite in the test's own directory."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import AdaptersSettings, ModelRoute, Settings
from tests.conftest import settings_for

BASE = "smol"


def write_adapter(directory: Path, **overrides: object) -> str:
    """A directory shaped like ``PeftModel.save_pretrained`` output (the weights file is not real tensors)."""
    config = {
        "peft_type": "LORA",
        "r": 8,
        "lora_alpha": 16,
        "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": f"/models/{BASE}",
        **overrides,
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text(json.dumps(config))
    (directory / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    return str(directory)


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Callable[..., str]:
    def make(name: str, **overrides: object) -> str:
        return write_adapter(tmp_path / "adapters" / name, **overrides)

    return make


def adapter_settings(tmp_path: Path, *urls: str, max_loras: int = 4, **kwargs: object) -> Settings:
    route = ModelRoute(name=BASE, backends=list(urls), max_loras=max_loras, max_lora_rank=16)
    config = AdaptersSettings(url=f"sqlite:///{tmp_path / 'registry.db'}", poll_s=0.1, reconcile_s=0.2)
    return settings_for(route, home=str(tmp_path), adapters=config, **kwargs)
