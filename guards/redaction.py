"""Turning findings into text: typed placeholders that stay consistent within one request, and masks."""

from __future__ import annotations

from guards.types import Finding

# Entities whose formatting varies for one value ("4111 1111 1111 1111" and "4111-1111-1111-1111").
_FORMATTED = frozenset({"CREDIT_CARD", "IBAN", "PHONE", "US_SSN"})


class RedactionContext:
    """Placeholder numbering for one request, shared by its input messages, its output and its stream.

    The same value always gets the same placeholder (``<EMAIL_1>`` in the prompt and in the answer), so the
    model can still refer to "the first e-mail address" and the log stays joinable by placeholder.
    """

    __slots__ = ("_placeholders", "_counts")

    def __init__(self) -> None:
        self._placeholders: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def placeholder(self, entity: str, value: str) -> str:
        key = (entity, _normalise(entity, value))
        found = self._placeholders.get(key)
        if found is None:
            number = self._counts[entity] = self._counts.get(entity, 0) + 1
            found = self._placeholders[key] = f"<{entity}_{number}>"
        return found


def _normalise(entity: str, value: str) -> str:
    if entity in _FORMATTED:
        return "".join(char for char in value if char.isalnum()).upper()
    return value.lower() if entity == "EMAIL" else value


def mask(value: str, keep: int) -> str:
    """Star out all but the last ``keep`` characters; short values are starred out whole."""
    if len(value) <= 2 * keep:
        return "*" * len(value)
    return "*" * (len(value) - keep) + value[-keep:]


def apply(text: str, findings: list[Finding], context: RedactionContext, mask_keep: int) -> str:
    """Replace the redact/mask spans of ``findings`` (sorted, not overlapping) in ``text``."""
    parts: list[str] = []
    pos = 0
    for finding in findings:
        if finding.action not in ("redact", "mask"):
            continue
        value = text[finding.start : finding.end]
        parts.append(text[pos : finding.start])
        if finding.action == "redact":
            parts.append(context.placeholder(finding.entity, value))
        else:
            parts.append(mask(value, mask_keep))
        pos = finding.end
    if not parts:
        return text
    parts.append(text[pos:])
    return "".join(parts)
