"""One export of the guard models per test session: fetching, converting and training take seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from guards import GuardModels
from guards.injection_export import ensure_injection_model
from guards.jigsaw_export import ensure_jigsaw_model
from guards.toxicity_export import ensure_toxicity_model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("guard-models")
    ensure_toxicity_model(directory)
    ensure_jigsaw_model(directory)
    ensure_injection_model(directory)
    return directory


@pytest.fixture(scope="session")
def models(model_dir: Path) -> GuardModels:
    return GuardModels(model_dir)
