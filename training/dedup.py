"""Exact and near-duplicate detection on normalised text.

Near-duplicates are measured by exact Jaccard similarity of word 3-gram sets. Candidates come from an
inverted index over the 3-grams, so only records sharing one are compared: adapter datasets are thousands of
records, where this is fast, deterministic and misses nothing. MinHash/LSH would be the step for millions.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter, defaultdict

_WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """Case, accents, punctuation and spacing removed: what "the same text" means here."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    return " ".join(_WORD.findall("".join(c for c in folded if not unicodedata.combining(c))))


def fingerprint(text: str) -> str:
    return hashlib.sha256(normalise(text).encode()).hexdigest()


def shingles(text: str, size: int = 3) -> frozenset[str]:
    words = normalise(text).split()
    if len(words) < size:
        return frozenset({" ".join(words)}) if words else frozenset()
    return frozenset(" ".join(words[i : i + size]) for i in range(len(words) - size + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class NearDuplicateIndex:
    """Texts added so far, queried for the most similar one at or above ``threshold``."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._exact: dict[str, int] = {}
        self._sets: list[frozenset[str]] = []
        self._postings: dict[str, list[int]] = defaultdict(list)

    def match(self, text: str) -> tuple[int, float] | None:
        """(index of the added text it duplicates, similarity), or None."""
        exact = self._exact.get(fingerprint(text))
        if exact is not None:
            return exact, 1.0
        found = shingles(text)
        shared = Counter(i for gram in found for i in self._postings.get(gram, ()))
        best: tuple[int, float] | None = None
        for index, common in shared.items():
            similarity = common / (len(found) + len(self._sets[index]) - common)
            if similarity >= self.threshold and (best is None or similarity > best[1]):
                best = (index, similarity)
        return best

    def add(self, text: str) -> int:
        index = len(self._sets)
        self._exact.setdefault(fingerprint(text), index)
        found = shingles(text)
        self._sets.append(found)
        for gram in found:
            self._postings[gram].append(index)
        return index
