"""A sentence encoder exported to ONNX (``model.onnx`` + ``tokenizer.json``), run with onnxruntime.

The semantic guard reads prompts through it and the monitor embeds them for drift with the same class, so
one exported MiniLM serves both. Serving imports neither torch nor transformers. Prompts are sorted by length
before batching so each batch pads only to its own longest prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
# Where the default encoder is exported, under the models folder (monitor.embedder_export exports it).
DEFAULT_DIR_NAME = "all-MiniLM-L6-v2-onnx"


class SentenceEncoder:
    """Texts in, L2-normalised float32 vectors out (cosine similarity = dot product).

    ``embed`` is CPU-bound and releases the GIL in onnxruntime: call it from a worker thread, not the event loop.
    """

    def __init__(self, directory: str | Path, *, max_length: int = 256, batch_size: int = 32, threads: int = 0) -> None:
        directory = Path(directory)
        if not (directory / MODEL_FILE).is_file():
            raise FileNotFoundError(f"no exported sentence encoder at {directory}: run ensure_embedder() first")
        self.directory = directory
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(directory / TOKENIZER_FILE, max_length)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(directory / MODEL_FILE), options, providers=_providers())
        self._inputs = {node.name for node in self._session.get_inputs()}
        self.dimension: int = self._session.get_outputs()[0].shape[-1]

    @property
    def on_gpu(self) -> bool:
        return self._session.get_providers()[0] == "CUDAExecutionProvider"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings in the order of ``texts``: shape (len(texts), dimension)."""
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        # Tokenize once, then batch neighbours in length order.
        encodings = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([len(encoding.ids) for encoding in encodings], kind="stable")
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
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


def _providers() -> list[str]:
    """CUDA first where onnxruntime has it (onnxruntime-gpu on a GPU machine), else the CPU."""
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


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
