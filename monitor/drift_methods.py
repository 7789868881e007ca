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
from typing import Literal

import msgspec
import numpy as np
import pandas as pd
from evidently.legacy.metrics.data_drift.embedding_drift_methods import (
    DistanceDriftMethod,
    DriftMethod,
    MMDDriftMethod,
    ModelDriftMethod,
    RatioDriftMethod,
)

MethodName = Literal["mmd", "distance", "model", "ratio"]


class Thresholds(msgspec.Struct, frozen=True):
    fire: float
    clear: float


# Window of 200 prompts, reference sample of 1,000 (see the module docstring).
CALIBRATED: dict[str, Thresholds] = {
    # MMD^2 (unbiased, RBF kernel with the median heuristic): null mean ~0 whatever the window size.
    "mmd": Thresholds(fire=0.0065, clear=0.0045),
    # Euclidean distance between mean embeddings: its null grows as the window shrinks (0.09 at 100).
    "distance": Thresholds(fire=0.10, clear=0.088),
    # ROC AUC of a reference-vs-current classifier: 0.5 means indistinguishable.
    "model": Thresholds(fire=0.64, clear=0.59),
    # Share of the 384 components whose Wasserstein distance exceeds 0.1 std.
    "ratio": Thresholds(fire=0.69, clear=0.58),
}


METHODS: dict[str, type[DriftMethod]] = {
    "mmd": MMDDriftMethod,
    "distance": DistanceDriftMethod,
    "model": ModelDriftMethod,
    "ratio": RatioDriftMethod,
}


class MethodConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which Evidently method scores a window, and where it fires and clears (None: calibrated default)."""

    name: MethodName = "mmd"
    threshold: float | None = None
    clear_threshold: float | None = None
    # Reduce both sets to this many principal components first (Evidently's own option).
    pca_components: int | None = None

    @property
    def thresholds(self) -> Thresholds:
        default = CALIBRATED[self.name]
        fire = default.fire if self.threshold is None else self.threshold
        clear = default.clear if self.clear_threshold is None else self.clear_threshold
        if clear > fire:
            raise ValueError(f"clear_threshold {clear} is above threshold {fire}: drift could never be cleared")
        return Thresholds(fire=fire, clear=clear)


def evidently_method(config: MethodConfig) -> DriftMethod:
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
