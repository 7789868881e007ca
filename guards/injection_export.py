"""One-time training and export of the injection classifier (needs scikit-learn, skl2onnx and pyarrow, like
the profanity export): word 1-2-gram plus character 3-5-gram TF-IDF and a logistic regression, fitted on
every source guards/injection_sources.py fetches that has both classes, each source weighing the same."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from guards.toxicity_export import export_text_linear

log = logging.getLogger(__name__)

INJECTION_MODEL_FILE = "injection-linear.onnx"
# The score a text needs to count as an injection. Chosen by leave-one-source-out runs on the training
# sources (`python -m bench.guards`, "operating threshold"): the lowest threshold whose mean false-positive
# rate over the sources with benign texts stays at or under TARGET_FPR. The export shifts the model's
# intercept so that this score maps to 0.5, the guard's default threshold.
OPERATING_THRESHOLD = 0.83
TARGET_FPR = 0.05
# Character n-grams see through spacing, leetspeak and partial words that word pairs miss; both
# vocabularies are capped to keep the ONNX graph (and its per-request lookup) small.
MAX_WORD_FEATURES = 60_000
MAX_CHAR_FEATURES = 60_000


# Written into the ONNX file: a file from an older recipe (the same name) is retrained, not served.
RECIPE = f"word 1-2 + char 3-5 binary TF-IDF, logistic regression, two-class sources, threshold {OPERATING_THRESHOLD}"


def ensure_injection_model(directory: str | Path) -> Path:
    """The injection classifier's ONNX file in ``directory``, trained and exported first if it is missing
    or was trained by another recipe."""
    path = Path(directory) / INJECTION_MODEL_FILE
    if not path.exists() or _recipe(path) != RECIPE:
        log.info("training the injection classifier into %s (once per machine)", path)
        train_injection(path)
    return path


def _recipe(path: Path) -> str | None:
    import onnx

    return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}.get("driftgate.recipe")


def normalize(text: str) -> str:
    """What the classifier reads: lower case, whitespace runs as one space (the runtime does the same)."""
    return " ".join(text.lower().split())


def injection_features():  # noqa: ANN201 - a scikit-learn FeatureUnion, imported lazily
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion(
        [
            # The token pattern is Python's (?u)\b\w\w+\b; the export rewrites it in RE2 for onnxruntime.
            ("words", TfidfVectorizer(ngram_range=(1, 2), binary=True, min_df=2, max_features=MAX_WORD_FEATURES)),
            (
                "chars",
                TfidfVectorizer(
                    analyzer="char", ngram_range=(3, 5), binary=True, min_df=3, max_features=MAX_CHAR_FEATURES
                ),
            ),
        ]
    )


def source_weights(labels_by_source: list[list[int]]) -> np.ndarray:
    """Sample weights under which every source, and each class within a source, weighs the same.

    The sources differ a hundredfold in size; unweighted, the largest one's notion of "benign" (short
    questions) would decide what every benign text must look like.
    """
    parts = []
    for labels in labels_by_source:
        array = np.asarray(labels)
        weights = np.zeros(len(array))
        for cls in (0, 1):
            count = int((array == cls).sum())
            if count:
                weights[array == cls] = 0.5 / count
        parts.append(weights)
    weights = np.concatenate(parts)
    return weights / weights.mean()


def trainable(sources: dict[str, tuple[list[str], list[int]]]) -> dict[str, tuple[list[str], list[int]]]:
    """The sources with both classes. One with attacks only is for evaluation: alone it teaches the model
    its language or style, not attacks (yanismiraoui, all attacks and all in languages no benign text is
    in, made the model block ordinary French and Italian questions)."""
    return {name: rows for name, rows in sources.items() if len(set(rows[1])) == 2}


def fit_injection(sources: dict[str, tuple[list[str], list[int]]]):  # noqa: ANN201 - (features, model)
    from sklearn.linear_model import LogisticRegression

    sources = trainable(sources)

    texts = [normalize(text) for texts, _ in sources.values() for text in texts]
    labels = [label for _, labels in sources.values() for label in labels]
    features = injection_features()
    matrix = features.fit_transform(texts)
    weights = source_weights([labels for _, labels in sources.values()])
    model = LogisticRegression(C=4.0, max_iter=3000).fit(matrix, labels, sample_weight=weights)
    return features, model


def move_operating_point(model, threshold: float) -> None:  # noqa: ANN001 - a fitted LogisticRegression
    """Shift the intercept so that a probability of ``threshold`` becomes 0.5."""
    model.intercept_ = model.intercept_ - math.log(threshold / (1 - threshold))


def train_injection(path: str | Path) -> Path:
    from importlib.metadata import version

    from guards.injection_sources import injection_sources

    sources = injection_sources()
    features, model = fit_injection(sources)
    move_operating_point(model, OPERATING_THRESHOLD)
    counts = ", ".join(f"{name} {len(texts)}" for name, (texts, _) in sources.items())
    source = f"injection sources ({counts}), scikit-learn {version('scikit-learn')}"
    return export_text_linear(features, model, path, source, {"driftgate.recipe": RECIPE})
