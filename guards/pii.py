"""The PII guard: pattern entities, phone numbers and (optionally) names, as non-overlapping findings."""

from __future__ import annotations

import phonenumbers

from guards.config import PiiConfig
from guards.ner import NameRecognizer
from guards.patterns import scan
from guards.types import Finding

# Which finding keeps a span when two overlap: checksummed entities first, names and phones last.
_PRIORITY = {
    "CREDIT_CARD": 0, "IBAN": 0, "US_SSN": 1, "SECRET": 2, "EMAIL": 3, "IP_ADDRESS": 4, "PHONE": 5,
    "PERSON": 6, "LOCATION": 6,
}  # fmt: skip
# A phone number has at least seven digits; below that PhoneNumberMatcher would find nothing anyway.
_MIN_PHONE_DIGITS = 7


class PiiGuard:
    """Finds PII and gives each finding the action the alias's policy sets for its entity."""

    name = "pii"

    def __init__(self, config: PiiConfig, names: NameRecognizer | None = None) -> None:
        self._config = config
        self._names = names if config.names else None
        self._actions = config.actions

    @property
    def detects_names(self) -> bool:
        return self._names is not None

    def inspect(self, text: str, *, starts_in_code: bool = False) -> list[Finding]:
        patterns = scan(text, self._config.entropy_bits, starts_in_code)
        spans: list[tuple[str, int, int, float]] = [(entity, start, end, 1.0) for entity, start, end in patterns]
        if sum(map(text.count, "0123456789")) >= _MIN_PHONE_DIGITS:
            spans += self._phones(_blank(text, patterns))
        if self._names is not None:
            spans += self._names.find(text)
        actions = self._actions
        return [
            Finding(entity, start, end, self.name, actions.get(entity, "allow"), score)
            for entity, start, end, score in _resolve_overlaps(spans)
        ]

    def _phones(self, text: str) -> list[tuple[str, int, int, float]]:
        matcher = phonenumbers.PhoneNumberMatcher(text, self._config.phone_region, phonenumbers.Leniency.VALID)
        return [("PHONE", match.start, match.end, 1.0) for match in matcher]


def _blank(text: str, spans: list[tuple[str, int, int]]) -> str:
    """``text`` with the pattern findings spaced out (same offsets): phonenumbers would otherwise spend most
    of its time trying the digits of cards and IBANs as phone numbers, only to lose the overlap anyway."""
    if not spans:
        return text
    parts, pos = [], 0
    for _, start, end in spans:
        parts += [text[pos:start], " " * (end - start)]
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def _resolve_overlaps(spans: list[tuple[str, int, int, float]]) -> list[tuple[str, int, int, float]]:
    """Keep the higher-priority span where two overlap; return the survivors sorted by start."""
    if len(spans) < 2:
        return spans
    kept: list[tuple[str, int, int, float]] = []
    for span in sorted(spans, key=lambda s: (_PRIORITY.get(s[0], 9), s[1])):
        if all(span[2] <= other[1] or span[1] >= other[2] for other in kept):
            kept.append(span)
    kept.sort(key=lambda s: s[1])
    return kept
