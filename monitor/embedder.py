"""Sentence embeddings for drift detection: an ONNX encoder run with onnxruntime and ``tokenizers``.

Serving imports neither torch nor transformers: the model directory that :mod:`monitor.embedder_export`
writes holds everything needed (``model.onnx`` + ``tokenizer.json``). Prompts are sorted by length before
batching so each batch pads only to its own longest prompt; that, not the batch size, is what keeps short
prompts cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

MARKER = "driftgate-embedder.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"


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


class Embedder:
    """Turns prompts into L2-normalised float32 vectors (cosine similarity = dot product).

    ``embed`` is CPU-bound and releases the GIL in onnxruntime: call it from a worker thread, not the event loop.
    """

    def __init__(self, config: EmbedderSettings) -> None:
        directory = Path(config.model_dir)
        if not (directory / MODEL_FILE).is_file():
            raise FileNotFoundError(f"no exported embedder at {directory}: run ensure_embedder() first")
        self.config = config
        self.tokenizer = load_tokenizer(directory / TOKENIZER_FILE, config.max_length)
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(directory / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        self._inputs = {node.name for node in self._session.get_inputs()}
        self.dimension: int = self._session.get_outputs()[0].shape[-1]

    def embed(self, prompts: Sequence[str]) -> np.ndarray:
        """Embeddings in the order of ``prompts``: shape (len(prompts), dimension)."""
        out = np.empty((len(prompts), self.dimension), dtype=np.float32)
        if not prompts:
            return out
        # Tokenize once, then batch neighbours in length order.
        encodings = self.tokenizer.encode_batch(list(prompts))
        order = np.argsort([len(encoding.ids) for encoding in encodings], kind="stable")
        for start in range(0, len(order), self.config.batch_size):
            chunk = order[start : start + self.config.batch_size]
            out[chunk] = self._run([encodings[i] for i in chunk])
        return out

    def _run(self, encodings: list[Encoding]) -> np.ndarray:
        ids, mask = pad(encodings)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (output,) = self._session.run(None, {name: value for name, value in feeds.items() if name in self._inputs})
        if output.ndim == 3:  # an encoder exported without pooling: mean over the real tokens
            weights = mask[..., None].astype(np.float32)
            output = (output * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(output, axis=1, keepdims=True)
        return output / np.maximum(norms, 1e-12)


def pad(encodings: list[Encoding]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask, padded to the longest encoding of this batch."""
    width = max(len(encoding.ids) for encoding in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
        mask[row, : len(encoding.ids)] = 1
    return ids, mask


def load_tokenizer(path: Path, max_length: int) -> Tokenizer:
    """A tokenizer that truncates to ``max_length`` and leaves padding to the caller."""
    tokenizer = Tokenizer.from_file(str(path))
    # Files saved by transformers may carry fixed-length padding; padding is done per batch instead.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


def read_info(directory: Path) -> EmbedderInfo | None:
    """The marker of an exported model, or None if the directory holds none."""
    marker = directory / MARKER
    if not marker.is_file():
        return None
    return msgspec.json.decode(marker.read_bytes(), type=EmbedderInfo)
