"""The model tier's heads: trained against benign texts only, thresholds held to the target FPR on
out-of-fold scores, in every benign group."""

from __future__ import annotations

import numpy as np

from guards.semantic.train import threshold_at_fpr, train_heads


def clusters(seed: int = 0) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Benign texts around one direction, "hate" and "threat" around two others (unit vectors, 16-d)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(16, dtype=np.float32)[:3]
    vectors, labels = [], []
    for centre, label, count in ((0, (), 600), (1, ("hate",), 150), (2, ("threat",), 150)):
        points = centres[centre] + 0.35 * rng.standard_normal((count, 16)).astype(np.float32)
        vectors.append(points / np.linalg.norm(points, axis=1, keepdims=True))
        labels += [label] * count
    return np.concatenate(vectors), labels


def test_each_head_finds_its_category_within_the_target_fpr() -> None:
    vectors, labels = clusters()
    heads = train_heads(vectors, labels, ("hate", "threat", "self_harm"), target_fpr=0.05)
    test, test_labels = clusters(seed=1)
    flagged = heads.scores(test) >= heads.thresholds
    benign = np.array([not row for row in test_labels])
    for column, category in enumerate(("hate", "threat")):
        positive = np.array([category in row for row in test_labels])
        assert flagged[positive, column].mean() > 0.9, category
        assert flagged[benign, column].mean() <= 0.08, category
    assert not flagged[:, 2].any()  # no self-harm examples: a head that never fires


def test_threshold_keeps_the_share_of_benign_scores_reaching_it() -> None:
    scores = np.linspace(0, 1, 101)
    threshold = threshold_at_fpr(scores, 0.05)
    assert (scores >= threshold).sum() == 5


def test_a_hard_benign_group_sets_the_threshold_not_the_easy_majority() -> None:
    """Look-alikes near the hate cluster: the everyday majority alone would allow a threshold that blocks many."""
    vectors, labels = clusters()
    rng = np.random.default_rng(3)
    near = np.eye(16, dtype=np.float32)[1] * 0.6 + np.eye(16, dtype=np.float32)[0] * 0.8
    look_alikes = near + 0.2 * rng.standard_normal((40, 16)).astype(np.float32)
    vectors = np.concatenate([vectors, look_alikes / np.linalg.norm(look_alikes, axis=1, keepdims=True)])
    labels = [*labels, *([()] * 40)]
    groups = ["everyday" if not row else "labeled" for row in labels[:-40]] + ["look-alike"] * 40
    pooled = train_heads(vectors, labels, ("hate",), target_fpr=0.05)
    grouped = train_heads(vectors, labels, ("hate",), target_fpr=0.05, groups=groups)
    scores = grouped.scores(vectors[-40:])[:, 0]
    assert (pooled.scores(vectors[-40:])[:, 0] >= pooled.thresholds[0]).mean() > 0.1  # pooled: many blocked
    assert (scores >= grouped.thresholds[0]).mean() <= 0.05
