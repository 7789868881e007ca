"""The toxicity guard and its ONNX runtimes. Serving imports onnxruntime (and tokenizers for "hf") only:
exporting (h5py, scikit-learn, skl2onnx) stays in guards/*_export.py, which runs once per machine.

Every classifier scores a batch of texts on its own labels: the default Jigsaw model on six categories
(toxic, severe_toxic, obscene, threat, insult, identity_hate), the profanity and hf models on one, "toxicity".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from guards.config import RULE_CATEGORIES, CategoryPolicy, ToxicityModel, ToxicitySettings
from guards.threats import rule_scores
from guards.types import ACTION_RANK, Finding

SINGLE_LABEL = ("toxicity",)


class TextClassifier(Protocol):
    labels: tuple[str, ...]

    def scores(self, texts: list[str]) -> np.ndarray:
        """Probabilities in [0, 1], shape (len(texts), len(labels))."""
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

    def __init__(self, path: str | Path, labels: tuple[str, ...] = SINGLE_LABEL) -> None:
        self.labels = labels
        self._session = _session(path)
        self._input = self._session.get_inputs()[0].name
        self._output = [o.name for o in self._session.get_outputs()][-1]

    def scores(self, texts: list[str]) -> np.ndarray:
        # Whitespace runs collapsed as in training: the character n-gram graph's tokenizer ("." in RE2)
        # skips newlines, where scikit-learn counted them; word tokens are the same either way.
        batch = np.array([[" ".join(text.lower().split())] for text in texts], dtype=object)
        (probabilities,) = self._session.run([self._output], {self._input: batch})
        return probabilities[:, 1:2].astype(np.float64)


class JigsawOnnxClassifier:
    """The Jigsaw BiLSTM exported by ``guards.jigsaw_export``: six sigmoid scores per text.

    Tokenizes as the Keras ``Tokenizer`` it was trained with did (lower-case, its punctuation filtered to
    spaces, split on spaces, words outside its 20,000 dropped) and pads as ``pad_sequences`` did (the last 100
    words, zeros in front). A whole batch is one fixed-shape ONNX call.
    """

    def __init__(self, path: str | Path, vocabulary: str | Path) -> None:
        spec = json.loads(Path(vocabulary).read_text())
        self.labels = tuple(spec["labels"])
        self._words: dict[str, int] = spec["words"]
        self._split = spec["split"]
        self._table = str.maketrans(dict.fromkeys(spec["filters"], spec["split"]))
        self._length = int(spec["sequence_length"])
        self._session = _session(path)

    def encode(self, texts: list[str]) -> np.ndarray:
        ids = np.zeros((len(texts), self._length), dtype=np.int64)
        words = self._words
        for row, text in enumerate(texts):
            known = [words[w] for w in text.lower().translate(self._table).split(self._split) if w in words]
            known = known[-self._length :]
            if known:
                ids[row, self._length - len(known) :] = known
        return ids

    def scores(self, texts: list[str]) -> np.ndarray:
        return self._session.run(None, {"ids": self.encode(texts)})[0].astype(np.float64)


class HFOnnxClassifier:
    """Any Hugging Face sequence classifier exported to ONNX, with its ``tokenizer.json``.

    Feeds whichever of input_ids / attention_mask / token_type_ids the graph declares, and reads the
    first output as logits of shape (batch, labels).
    """

    labels = SINGLE_LABEL

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

    def scores(self, texts: list[str]) -> np.ndarray:
        return np.array([[self._score(text)] for text in texts])

    def _score(self, text: str) -> float:
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
    """One finding per text: the category with the strongest action (the highest score among equals).

    Each category has its own threshold and action; the phrase rules of guards/threats.py raise "threat" and
    add "self_harm" (urging the reader to self-harm) and "self_harm_intent" (the speaker's own), which no
    model here scores.
    """

    name = "toxicity"

    def __init__(self, config: ToxicitySettings, classifier: TextClassifier) -> None:
        self._config = config
        self._classifier = classifier
        self._default = CategoryPolicy(config.threshold, config.action)

    def _policy(self, label: str) -> CategoryPolicy:
        found = self._config.categories.get(label)
        return found if found is not None else RULE_CATEGORIES.get(label, self._default)

    @property
    def labels(self) -> tuple[str, ...]:
        return self._classifier.labels

    def category_scores(self, texts: list[str]) -> list[dict[str, float]]:
        """Every category's score for each text (the moderation endpoint reports them all)."""
        labels = self._classifier.labels
        rows = [dict(zip(labels, map(float, row), strict=True)) for row in self._classifier.scores(texts)]
        if self._config.threat_rules:
            for text, row in zip(texts, rows, strict=True):
                for category, score in rule_scores(text).items():
                    row[category] = max(row.get(category, 0.0), score)
        return rows

    def flagged(self, scores: dict[str, float]) -> dict[str, bool]:
        """Whether each category reaches its threshold."""
        return {label: score >= self._policy(label).threshold for label, score in scores.items()}

    def inspect(self, text: str, *, starts_in_code: bool = False) -> list[Finding]:
        return [self.finding(text, self.category_scores([text])[0])]

    def finding(self, text: str, scores: dict[str, float]) -> Finding:
        best: tuple[int, float, str] = (-1, -1.0, "")
        for label, score in scores.items():
            policy = self._policy(label)
            action = policy.action if score >= policy.threshold else "allow"
            best = max(best, (ACTION_RANK[action], score, label))
        rank, score, label = best
        action = next(a for a, r in ACTION_RANK.items() if r == rank)
        return Finding(label, 0, len(text), self.name, action, score)
