"""The PII guard: pattern entities, phone numbers and (optionally) names, as non-overlapping findings."""

from __future__ import annotations

import re

import phonenumbers

from guards.config import PiiSettings
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
# North American numbers by shape, assigned or not (libphonenumber's VALID needs an assigned area code and
# exchange, and a privacy guard must not depend on that): area code and exchange start with 2-9, as NANP
# requires, written with separators ("(245) 957-1177", "245-957-1177", "+1 245.957.1177"), or as ten bare
# digits when a phone word stands just before them.
_NANP = re.compile(
    r"(?<![\w+.\-/])(?:\+?1[\s.\-]?)?(?:\([2-9]\d\d\)\s?|[2-9]\d\d[\s.\-])[2-9]\d\d[\s.\-]\d{4}(?![\w\-/]|\.\d)"
)
_NANP_BARE = re.compile(r"(?<![\w+.\-/])(?:\+?1)?[2-9]\d\d[2-9]\d{6}(?![\w\-/]|\.\d)")
# Any number in a contact context ("phone 415-055-1234", "call me at 0161 496 0000"): after a phone word the
# digits say nothing about whether it is a phone (an exchange may start with 0 or 1, a number may be unassigned
# or local), so the shape is enough: 7-15 digits in groups, an optional +country code and (area code).
_CONTACT_NUMBER = re.compile(
    r"(?<![\w+.\-/])(?:\+\d{1,3}[\s.\-]?)?(?:\(\d{1,5}\)[\s.\-]?)?\d{1,8}(?:[\s.\-]\d{1,8}){0,5}(?![\w\-/]|\.\d)"
)
# Dates and times read like digit groups too: "call me on 2024-05-01" names a day, not a number.
_DATE_SHAPE = re.compile(r"\d{4}[.\-/]\d{1,2}[.\-/]\d{1,2}|\d{1,2}[.\-/]\d{1,2}[.\-/]\d{2,4}")
_PHONE_WORDS = re.compile(
    r"\b(?:phone|tel|telephone|mobile|cell|call|fax|text|sms|whatsapp|number|reach|ring|contact)\b\W{0,12}(?:\w+\W{1,3}){0,3}\Z",
    re.IGNORECASE,
)
# The contact context the shape alone needs: a phone word, or "text / ring / reach me" ("the number 1000000",
# "reach 1000000 users" are no phone numbers).
_CONTACT_WORDS = re.compile(
    r"(?:\b(?:phone|tel|telephone|mobile|cell|cellphone|fax|whatsapp|sms|landline|hotline|call|dial)\b|"
    r"\b(?:text|ring|reach|contact)\s+(?:me|us|him|her|them)\b)\W{0,12}(?:\w+\W{1,3}){0,3}\Z",
    re.IGNORECASE,
)
# An identifier of something other than a person: "order 245-957-1177" is an order number.
_NOT_PHONE_BEFORE = re.compile(
    r"\b(?:order|invoice|ticket|ref|reference|isbn|issn|sku|part|serial|tracking|case|account|id|version|"
    r"build|model|item|receipt|po)\b\W{0,6}(?:no\.?|nr\.?|number|#)?\W{0,3}\Z",
    re.IGNORECASE,
)


class PiiGuard:
    """Finds PII and gives each finding the action the alias's policy sets for its entity."""

    name = "pii"

    def __init__(self, config: PiiSettings, names: NameRecognizer | None = None) -> None:
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
        found = [("PHONE", match.start, match.end, 1.0) for match in matcher]
        for pattern, context in ((_NANP, None), (_NANP_BARE, _PHONE_WORDS), (_CONTACT_NUMBER, _CONTACT_WORDS)):
            for match in pattern.finditer(text):
                before = text[max(0, match.start() - 40) : match.start()]
                if _NOT_PHONE_BEFORE.search(before) or (context is not None and not context.search(before)):
                    continue
                if pattern is _CONTACT_NUMBER and not _contact_shape(match.group()):
                    continue
                found.append(("PHONE", match.start(), match.end(), 1.0))
        return found


def _contact_shape(number: str) -> bool:
    """A phone's digit count (7-15, E.164's maximum) and not a date."""
    return _MIN_PHONE_DIGITS <= sum(c.isdigit() for c in number) <= 15 and not _DATE_SHAPE.fullmatch(number)


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
