from __future__ import annotations

from pathlib import Path

import pytest

BASE = Path(__file__).resolve().parents[3] / ".driftgate" / "models" / "SmolLM2-135M-Instruct"


@pytest.fixture(scope="session")
def base_model() -> Path:
    if not (BASE / "model.safetensors").exists():
        pytest.skip(f"base model missing: run `driftgate models pull` to create {BASE}")
    return BASE
