"""The model tier's per-category heads: logistic regressions over the shared sentence encoder's embeddings.

A head is one weight vector and a bias per category, so serving them is one matrix product after the
encoder pass that the drift monitor makes of the same prompt anyway; no scikit-learn at serving time.
:mod:`guards.semantic.train` fits them, with per category the threshold chosen on a validation split. Not
serving is :class:`guards.semantic.guard.SemanticGuard`; ``bench/guards_semantic.py`` measures them
against the fast tier (docs/guards.md, "The model tier").
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import numpy as np


class Heads(msgspec.Struct, frozen=True):
    """Weights (dimension x categories), biases and thresholds, one column per category."""

    categories: tuple[str, ...]
    weights: np.ndarray
    biases: np.ndarray
    thresholds: np.ndarray

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Each category's probability for each embedding: shape (len(embeddings), len(categories))."""
        return 1.0 / (1.0 + np.exp(-(embeddings @ self.weights + self.biases)))

    def save(self, path: Path, meta: dict[str, object]) -> None:
        """One ``.npz`` (written beside, then renamed: a reader never sees half a file), ``meta`` as JSON in it."""
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(
            partial,
            categories=np.array(self.categories),
            weights=self.weights,
            biases=self.biases,
            thresholds=self.thresholds,
            meta=np.array(json.dumps(meta)),
        )
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> Heads:
        with np.load(path, allow_pickle=False) as found:
            return cls(
                tuple(str(c) for c in found["categories"]),
                found["weights"].astype(np.float32),
                found["biases"].astype(np.float32),
                found["thresholds"].astype(np.float32),
            )
