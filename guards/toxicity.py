"""The toxicity guard and its two ONNX runtimes. Serving imports onnxruntime (and tokenizers for "hf")
only: scikit-learn and skl2onnx stay in guards/toxicity_export.py, which runs once per machine."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from guards.config import ToxicityConfig, ToxicityModel
from guards.types import Finding


class TextClassifier(Protocol):
    def score(self, text: str) -> float:
        """Probability in [0, 1] that ``text`` is toxic."""
        ...


def _session(path: str | Path) -> ort.InferenceSession:
    """One thread per session: the gateway's concurrency comes from requests, not from one inference."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class LinearOnnxClassifier:
    """The alt-profanity-check TF-IDF + calibrated linear SVC, as exported by ``export_profanity_check``.

    The graph takes lower-cased text: Python's ``str.lower`` is exactly what scikit-learn applied in
    training, and onnxruntime's StringNormalizer needs a system locale that slim images lack.
    """

    def __init__(self, path: str | Path) -> None:
        self._session = _session(path)
        self._input = self._session.get_inputs()[0].name
        self._output = [o.name for o in self._session.get_outputs()][-1]

    def score(self, text: str) -> float:
        batch = np.array([[text.lower()]], dtype=object)
        (probabilities,) = self._session.run([self._output], {self._input: batch})
        return float(probabilities[0, 1])


class HFOnnxClassifier:
    """Any Hugging Face sequence classifier exported to ONNX, with its ``tokenizer.json``.

    Feeds whichever of input_ids / attention_mask / token_type_ids the graph declares, and reads the
    first output as logits of shape (batch, labels).
    """

    def __init__(self, model: ToxicityModel) -> None:
        from tokenizers import Tokenizer

        if model.path is None or model.tokenizer is None:
            raise ValueError("an 'hf' toxicity model needs both path (model.onnx) and tokenizer (tokenizer.json)")
        self._tokenizer = Tokenizer.from_file(model.tokenizer)
        self._tokenizer.enable_truncation(model.max_tokens)
        self._tokenizer.no_padding()
        self._session = _session(model.path)
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._labels = list(model.toxic_labels)
        self._sigmoid = model.activation == "sigmoid"

    def score(self, text: str) -> float:
        encoding = self._tokenizer.encode(text)
        feed = {
            "input_ids": np.array([encoding.ids], dtype=np.int64),
            "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
            "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
        }
        logits = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0][0]
        logits = logits.astype(np.float64)
        if self._sigmoid:
            return float(np.max(1.0 / (1.0 + np.exp(-logits[self._labels]))))
        exp = np.exp(logits - logits.max())
        return float(exp[self._labels].sum() / exp.sum())


class ToxicityGuard:
    """One finding per text: the score, and ``block`` (or the configured action) at the threshold."""

    name = "toxicity"

    def __init__(self, config: ToxicityConfig, classifier: TextClassifier) -> None:
        self._config = config
        self._classifier = classifier

    def inspect(self, text: str, *, starts_in_code: bool = False) -> list[Finding]:
        score = self._classifier.score(text)
        action = self._config.action if score >= self._config.threshold else "allow"
        return [Finding("TOXICITY", 0, len(text), self.name, action, score)]
