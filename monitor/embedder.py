"""Sentence embeddings for drift detection: the guards' ONNX :class:`SentenceEncoder` with the monitor's
settings. The model directory that :mod:`monitor.embedder_export` writes (``model.onnx`` + ``tokenizer.json``)
is the one the semantic guard reads too.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from guards.semantic.encoder import SentenceEncoder

MARKER = "driftgate-embedder.json"


class EmbedderSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Where the exported model lives and how to run it."""

    model_dir: str = ".driftgate/models/all-MiniLM-L6-v2-onnx"
    # Tokens kept per prompt; the gist of a prompt is in its start, and attention cost grows with length.
    max_length: int = 256
    batch_size: int = 32
    # onnxruntime intra-op threads; 0 lets onnxruntime use every core.
    threads: int = 0


class EmbedderInfo(msgspec.Struct, frozen=True):
    """What the marker file records about an exported model."""

    name: str
    source: str
    dimension: int
    # Largest 1 - cosine between the ONNX and PyTorch embeddings, measured at export time.
    max_cosine_error: float
    exported_at: float


class Embedder(SentenceEncoder):
    """The drift monitor's encoder: a :class:`SentenceEncoder` built from :class:`EmbedderSettings`."""

    def __init__(self, config: EmbedderSettings) -> None:
        super().__init__(
            config.model_dir, max_length=config.max_length, batch_size=config.batch_size, threads=config.threads
        )
        self.config = config


def read_info(directory: Path) -> EmbedderInfo | None:
    """The marker of an exported model, or None if the directory holds none."""
    marker = directory / MARKER
    if not marker.is_file():
        return None
    return msgspec.json.decode(marker.read_bytes(), type=EmbedderInfo)
