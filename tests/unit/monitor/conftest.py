"""Session fixtures for the monitor tests (``pg_cluster``, a real PostgreSQL server, is in tests/conftest.py).
``embedder`` and ``corpus`` are the exported ONNX embedder and the topic corpora of
demo/corpora.py embedded once per session (and cached on disk in pytest's cache directory,
keyed by the prompts and the exported model, so a second run does not embed again).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from demo.corpora import prompts
from monitor.embedder import Embedder, EmbedderSettings, read_info
from monitor.embedder_export import ensure_embedder

MODEL_DIR = Path(__file__).resolve().parents[3] / ".driftgate" / "models" / "all-MiniLM-L6-v2-onnx"
# name: (topic, prompts, seed). Reference and production traffic of a topic come from different seeds.
CORPORA = {
    "support_reference": ("support", 1000, 0),
    "support": ("support", 1500, 1),
    "cooking": ("cooking", 600, 1),
    "programming": ("programming", 800, 1),
}


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder(EmbedderSettings(model_dir=str(ensure_embedder(MODEL_DIR)), threads=2))


@pytest.fixture(scope="session")
def corpus(embedder: Embedder, pytestconfig: pytest.Config) -> dict[str, np.ndarray]:
    """Embeddings of every corpus, by name."""
    cache = pytestconfig.cache.mkdir("driftgate-corpus-embeddings")
    exported = read_info(MODEL_DIR)
    out = {}
    for name, (topic, count, seed) in CORPORA.items():
        texts = prompts(topic, count, seed)
        key = hashlib.sha256("\n".join([repr(exported), *texts]).encode()).hexdigest()[:16]
        path = cache / f"{name}-{key}.npy"
        if not path.is_file():
            np.save(path, embedder.embed(texts))
        out[name] = np.load(path)
    return out
