"""Training the model tier's heads on embeddings of labeled texts (scikit-learn, at export time only).

Each category's head learns its positives against benign texts only: the shipped sources label
categories partially (a Perspective-scored insult may also be a threat nobody marked), so another
category's text is no safe negative. The threshold is the lowest score that keeps the false-positive rate on
a validation split of the benign texts within ``target_fpr``: chosen on data the head did not fit, never on
an evaluation set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guards.semantic.heads import Heads

Labels = Sequence[tuple[str, ...]]


def train_heads(
    embeddings: np.ndarray,
    labels: Labels,
    categories: Sequence[str],
    *,
    target_fpr: float = 0.05,
    validation_share: float = 0.2,
    seed: int = 0,
) -> Heads:
    """One logistic-regression head per category that has positives; a category without any gets a head that
    never fires (weights 0, threshold above 1)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    validation = rng.random(len(labels)) < validation_share
    benign = np.array([not row for row in labels])
    weights = np.zeros((embeddings.shape[1], len(categories)), dtype=np.float32)
    biases = np.zeros(len(categories), dtype=np.float32)
    thresholds = np.full(len(categories), 2.0, dtype=np.float32)
    for column, category in enumerate(categories):
        positive = np.array([category in row for row in labels])
        fit = (positive | benign) & ~validation
        if positive[fit].sum() < 5:
            continue
        model = LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000)
        model.fit(embeddings[fit], positive[fit])
        weights[:, column] = model.coef_[0]
        biases[column] = model.intercept_[0]
        held = embeddings[validation & benign]
        benign_scores = 1.0 / (1.0 + np.exp(-(held @ weights[:, column] + biases[column])))
        thresholds[column] = threshold_at_fpr(benign_scores, target_fpr)
    return Heads(tuple(categories), weights, biases, thresholds)


def threshold_at_fpr(benign_scores: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold at which at most ``target_fpr`` of ``benign_scores`` reach it (0.5 when there is
    nothing to choose on)."""
    if len(benign_scores) == 0:
        return 0.5
    ordered = np.sort(benign_scores)[::-1]
    allowed = int(np.floor(target_fpr * len(ordered)))
    # Scores strictly above the (allowed+1)-th highest benign score flag at most `allowed` benign texts.
    return float(np.nextafter(ordered[min(allowed, len(ordered) - 1)], np.float32(2.0)))
