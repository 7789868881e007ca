"""One-time training and export of the injection classifier (needs scikit-learn and skl2onnx, like the
profanity export): word 1-2-gram TF-IDF and a logistic regression, fitted on guards/injection_data.py."""

from __future__ import annotations

import logging
from pathlib import Path

from guards.toxicity_export import export_text_linear

log = logging.getLogger(__name__)

INJECTION_MODEL_FILE = "injection-linear.onnx"


def ensure_injection_model(directory: str | Path) -> Path:
    """The injection classifier's ONNX file in ``directory``, trained and exported first if it is missing."""
    path = Path(directory) / INJECTION_MODEL_FILE
    if not path.exists():
        log.info("training the injection classifier into %s (once per machine)", path)
        train_injection(path)
    return path


def train_injection(path: str | Path) -> Path:
    from importlib.metadata import version

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from guards.injection_data import training_set

    texts, labels = training_set()
    # The token pattern is Python's (?u)\b\w\w+\b; the export rewrites it in RE2 for onnxruntime.
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    features = vectorizer.fit_transform(texts)
    # Classes weighted to balance: catching attacks comes first. Without the weighting the model is more
    # cautious (bastioncorpus: TPR 0.34, FPR 0.05 instead of 0.46 and 0.11; docs/guards.md).
    model = LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000).fit(features, labels)
    source = f"driftgate injection_data ({len(texts)} texts), scikit-learn {version('scikit-learn')}"
    return export_text_linear(vectorizer, model, path, source)
