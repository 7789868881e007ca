"""The model tier: a prompt's meaning scored by per-category heads on the shared sentence encoder.

The fast tier (Jigsaw BiLSTM and phrase rules) recognises words; this one reads what a prompt says, so hate
without a slur, veiled threats and contempt without an insulting word reach its heads. It runs after the fast
tier, which decides alone when it blocks. A prompt longer than the encoder reads at once (256 tokens) is read
in pieces of ``chunk_words`` words, at most ``max_chunks`` of them, each scored, the highest score per
category kept: a hateful sentence cannot hide behind pages of harmless text within that reach.
"""

from __future__ import annotations

import numpy as np

from guards.config import SemanticSettings
from guards.semantic.encoder import SentenceEncoder
from guards.semantic.heads import Heads
from guards.types import ACTION_RANK, Finding


class SemanticGuard:
    name = "semantic"

    def __init__(self, config: SemanticSettings, encoder: SentenceEncoder, heads: Heads) -> None:
        self._config = config
        self._encoder = encoder
        self._heads = heads
        # A configured threshold replaces the trained one for its category.
        self._thresholds = np.array(
            [config.thresholds.get(c, float(t)) for c, t in zip(heads.categories, heads.thresholds, strict=True)]
        )

    @property
    def labels(self) -> tuple[str, ...]:
        return self._heads.categories

    def category_scores(self, texts: list[str]) -> list[dict[str, float]]:
        """Every category's score for each text: one encoder batch over all their pieces."""
        pieces, owners = [], []
        for index, text in enumerate(texts):
            for piece in self._pieces(text):
                pieces.append(piece)
                owners.append(index)
        best = np.zeros((len(texts), len(self._heads.categories)), dtype=np.float32)
        if pieces:
            scores = self._heads.scores(self._encoder.embed(pieces))
            np.maximum.at(best, np.asarray(owners), scores)
        return [dict(zip(self._heads.categories, map(float, row), strict=True)) for row in best]

    def flagged(self, scores: dict[str, float]) -> dict[str, bool]:
        return {c: bool(scores[c] >= t) for c, t in zip(self._heads.categories, self._thresholds, strict=True)}

    def inspect(self, text: str, *, starts_in_code: bool = False) -> list[Finding]:
        return [self.finding(text, self.category_scores([text])[0])]

    def finding(self, text: str, scores: dict[str, float]) -> Finding:
        """The category furthest over its threshold (blocked), else the highest-scoring one (allowed)."""
        margins = {c: float(scores[c] - t) for c, t in zip(self._heads.categories, self._thresholds, strict=True)}
        category = max(margins, key=margins.__getitem__)
        action = self._config.action if margins[category] >= 0 else "allow"
        if ACTION_RANK[action] == 0:
            category = max(scores, key=scores.__getitem__)
        return Finding(category, 0, len(text), self.name, action, scores[category])

    def _pieces(self, text: str) -> list[str]:
        words = text.split()
        if not words:
            return []
        size = self._config.chunk_words
        return [" ".join(words[i : i + size]) for i in range(0, len(words), size)][: self._config.max_chunks]
