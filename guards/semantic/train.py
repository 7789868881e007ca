"""Training the model tier's heads on embeddings of labeled texts (scikit-learn, at export time only).

Each category's head learns its positives against benign texts only: the shipped sources label
categories partially (a Perspective-scored insult may also be a threat nobody marked), so another
category's text is no safe negative. The threshold is chosen on out-of-fold scores (each text scored by a
head fitted without it, k folds): the lowest score that keeps the false-positive rate within ``target_fpr``
in every benign group (``groups``: everyday prompts, and each kind of look-alike such as fiction or security
education), so thousands of easy everyday prompts cannot buy a threshold that blocks one look-alike domain
in three. Out-of-fold rather than a validation split: the written look-alike groups hold about thirty texts
each, and a fifth of that cannot place a threshold (measured: a split-chosen threshold false-blocked 30% of
the benign prompts written apart; out-of-fold, 6%).
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
    folds: int = 5,
    seed: int = 0,
    groups: Sequence[str] | None = None,
    min_group: int = 10,
) -> Heads:
    """One logistic-regression head per category that has positives; a category without enough gets a head
    that never fires (weights 0, threshold above 1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    def fitted(rows: np.ndarray, positive: np.ndarray) -> LogisticRegression:
        model = LogisticRegression(C=4.0, class_weight="balanced", max_iter=3000)
        return model.fit(embeddings[rows], positive[rows])

    benign = np.array([not row for row in labels])
    weights = np.zeros((embeddings.shape[1], len(categories)), dtype=np.float32)
    biases = np.zeros(len(categories), dtype=np.float32)
    thresholds = np.full(len(categories), 2.0, dtype=np.float32)
    for column, category in enumerate(categories):
        positive = np.array([category in row for row in labels])
        if positive.sum() < max(5, folds):
            continue
        rows = np.flatnonzero(positive | benign)
        out_of_fold = np.zeros(len(labels))
        for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(rows, positive[rows]):
            out_of_fold[rows[held]] = fitted(rows[train], positive).predict_proba(embeddings[rows[held]])[:, 1]
        model = fitted(rows, positive)
        weights[:, column] = model.coef_[0]
        biases[column] = model.intercept_[0]
        thresholds[column] = _grouped_threshold(out_of_fold, benign, groups, target_fpr, min_group)
    return Heads(tuple(categories), weights, biases, thresholds)


def _grouped_threshold(
    scores: np.ndarray, held: np.ndarray, groups: Sequence[str] | None, target_fpr: float, min_group: int
) -> float:
    """The highest of the per-group thresholds over the ``held`` texts (groups with ``min_group`` texts; all
    of them as one group besides)."""
    found = [threshold_at_fpr(scores[held], target_fpr)]
    if groups is not None:
        names = np.asarray(groups)
        for name in sorted(set(names[held])):
            members = held & (names == name)
            if members.sum() >= min_group:
                found.append(threshold_at_fpr(scores[members], target_fpr))
    return max(found)


def threshold_at_fpr(benign_scores: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold at which at most ``target_fpr`` of ``benign_scores`` reach it (0.5 when there is
    nothing to choose on)."""
    if len(benign_scores) == 0:
        return 0.5
    ordered = np.sort(benign_scores)[::-1]
    allowed = int(np.floor(target_fpr * len(ordered)))
    # Scores strictly above the (allowed+1)-th highest benign score flag at most `allowed` benign texts.
    return float(np.nextafter(ordered[min(allowed, len(ordered) - 1)], np.float32(2.0)))
