"""Evidently's embedding-drift methods, called directly on arrays, with thresholds calibrated here.

Evidently's ``Report`` + ``EmbeddingsDriftMetric`` spends seconds per check on a t-SNE picture; the
method objects under ``evidently.legacy`` compute the same score in milliseconds. Their built-in
thresholds are not used: ``ratio`` (and at small reference sets ``model``) raise drift on same-topic
traffic with them. The thresholds below come from ``python -m bench.drift`` (see docs/drift.md): the
``fire`` threshold is null mean + 1.5 x (null max - null mean) over 100 same-topic windows of 200
prompts against a 1,000-prompt reference; ``clear`` is about the null maximum, so a confirmed drift is
cleared only by windows that look like ordinary traffic.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from evidently.legacy.metrics.data_drift.embedding_drift_methods import (
    DistanceDriftMethod,
    DriftMethod,
    MMDDriftMethod,
    ModelDriftMethod,
    RatioDriftMethod,
)

from monitor.drift_types import CALIBRATED, MethodName, MethodSettings, Thresholds

__all__ = ["CALIBRATED", "METHODS", "MethodSettings", "MethodName", "Thresholds", "drift_score", "evidently_method"]

METHODS: dict[str, type[DriftMethod]] = {
    "mmd": MMDDriftMethod,
    "distance": DistanceDriftMethod,
    "model": ModelDriftMethod,
    "ratio": RatioDriftMethod,
}


def evidently_method(config: MethodSettings) -> DriftMethod:
    """The Evidently object that computes the score (its own verdict is ignored)."""
    return METHODS[config.name](pca_components=config.pca_components)


def drift_score(current: np.ndarray, reference: np.ndarray, method: DriftMethod) -> float:
    """Evidently's score for ``current`` against ``reference`` (rows are embeddings). CPU-bound."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn chatter about convergence and feature names
        # Fresh frames each call: ModelDriftMethod adds a column to the frames it is given.
        score, _, _ = method(pd.DataFrame(current), pd.DataFrame(reference))
    return float(score)


def sample_rows(embeddings: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """At most ``limit`` rows, drawn without replacement and reproducibly.

    A check's cost grows with the reference size (quadratically for MMD) while its precision is set by
    the smaller side, the window: a 1,000-row reference sample against 200-prompt windows loses little.
    """
    if len(embeddings) <= limit:
        return embeddings
    rows = np.random.default_rng(seed).choice(len(embeddings), size=limit, replace=False)
    return embeddings[np.sort(rows)]
