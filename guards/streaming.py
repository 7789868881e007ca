"""Output guards for a stream: emit what is safe now, hold back only what may still become an entity.

The redactor keeps the not-yet-emitted text in a buffer. After each delta it emits the buffer up to a cut
point and keeps the rest. The cut stays before:

* the last ``hold_chars`` characters when they may still grow into a spaced entity (digits, capitals and
  separators: a card, an IBAN, a phone number, an SSN, an IP), and before the trailing token without
  spaces (an e-mail address, a secret) up to ``max_token_chars``;
* any finding that crosses it.

A finding of at most ``hold_chars`` characters is therefore always complete in the buffer before any of it
is emitted, whichever chunk boundaries split it. Each scan also sees the last characters already emitted,
so look-behind rules (``version 1.2.3.4``) and open code fences still apply across the cut.

Toxicity is scored on the held text together with ``context_chars`` of the text emitted before it,
not on the whole answer each time (which would cost quadratic time in the answer's length). The first piece
goes out at ``min_emit_chars`` (the time to the first token), later ones at ``emit_chars``: each emit is one
scan, so the piece size sets how many times the answer is scanned.
"""

from __future__ import annotations

import re
from typing import Protocol

import msgspec

from guards.config import StreamSettings
from guards.redaction import RedactionContext
from guards.types import Action, Decision, Finding, strongest


class StagePipeline(Protocol):
    """What a redactor needs of the output stage (guards.pipeline.StagePipeline is one): a Protocol, so this
    module does not import the pipeline that imports it."""

    @property
    def detects_names(self) -> bool: ...

    def inspect(self, text: str, *, starts_in_code: bool = False) -> list[Finding]: ...

    def redact(self, text: str, findings: list[Finding], context: RedactionContext) -> str: ...

    def decisions(self, findings: list[Finding]) -> tuple[Decision, ...]: ...


# The end of the buffer that may still be the start of a spaced entity (digits, capitals, separators).
_SPACED_TAIL = re.compile(r"[0-9A-Z+()\-./ ]*\Z")
_LAST_SPACE = re.compile(r"\s(?=\S*\Z)")


class StreamStep(msgspec.Struct, frozen=True):
    """What to send now; after a ``block`` step the gateway ends the stream (finish_reason content_filter)."""

    text: str
    action: Action = "allow"
    decisions: tuple[Decision, ...] = ()

    @property
    def blocked(self) -> bool:
        return self.action == "block"


class StreamRedactor:
    """Feed it the content deltas of one streamed choice; send what each call returns.

    Pattern decisions come with the step that emits their span; the toxicity decision (the highest score
    seen) comes once, with the blocking step or with :meth:`flush`.
    """

    def __init__(self, pipeline: StagePipeline, context: RedactionContext, config: StreamSettings) -> None:
        self._pipeline = pipeline
        self._context = context
        self._config = config
        self._fixed_hold = pipeline.detects_names  # names have no shape to recognise a prefix by
        self._buffer = ""
        self._tail = ""  # the raw end of what was emitted, scanned again as left context
        self._tail_in_code = False  # whether ``_tail`` starts inside a fenced code block
        self._toxicity: Finding | None = None
        self._blocked = False

    def feed(self, delta: str) -> StreamStep:
        if self._blocked:
            return StreamStep("", "block")
        self._buffer += delta
        cut = self._cut_point()
        if cut < (self._config.emit_chars if self._tail else self._config.min_emit_chars):
            return StreamStep("")
        return self._emit(cut, final=False)

    def flush(self) -> StreamStep:
        """The end of the stream: everything still held, checked and redacted."""
        if self._blocked:
            return StreamStep("", "block")
        step = self._emit(len(self._buffer), final=True) if self._buffer else StreamStep("")
        if step.blocked or self._toxicity is None:
            return step
        return StreamStep(step.text, step.action, step.decisions + self._pipeline.decisions([self._toxicity]))

    def _cut_point(self) -> int:
        buffer, config = self._buffer, self._config
        held = max(0, len(buffer) - config.hold_chars)
        if self._fixed_hold:
            return held
        spaced = _SPACED_TAIL.search(buffer, held)
        cut = spaced.start() if spaced is not None and spaced.start() < len(buffer) else len(buffer)
        floor = max(0, len(buffer) - config.max_token_chars)
        space = _LAST_SPACE.search(buffer, floor)
        return min(cut, space.end() if space is not None else floor)

    def _emit(self, cut: int, final: bool) -> StreamStep:
        left = len(self._tail)
        window = self._tail + self._buffer
        findings = self._pipeline.inspect(window, starts_in_code=self._tail_in_code)
        end = left + cut
        spans: list[Finding] = []
        for finding in findings:
            if finding.guard == "toxicity":
                self._note_toxicity(finding)
            elif finding.end > left:
                if not final and finding.start < end < finding.end:
                    end = max(left, finding.start)  # never split a finding
                # A finding that reaches back into emitted text: redact at least what is left of it.
                spans.append(
                    msgspec.structs.replace(finding, start=max(finding.start, left) - left, end=finding.end - left)
                )
        if self._toxicity is not None and self._toxicity.action == "block":
            self._blocked = True
            self._buffer = ""
            return StreamStep("", "block", self._pipeline.decisions([self._toxicity]))
        spans = [span for span in spans if span.end <= end - left]
        action = strongest([span.action for span in spans])
        decisions = self._pipeline.decisions(spans)
        if action == "block":
            self._blocked = True
            self._buffer = ""
            return StreamStep("", "block", decisions)
        piece = window[left:end]
        self._buffer = window[end:]
        self._remember(piece)
        return StreamStep(self._pipeline.redact(piece, spans, self._context), action, decisions)

    def _note_toxicity(self, finding: Finding) -> None:
        if self._toxicity is None or finding.score > self._toxicity.score:
            self._toxicity = finding

    def _remember(self, piece: str) -> None:
        joined = self._tail + piece
        keep = self._config.context_chars
        dropped = joined[:-keep] if len(joined) > keep else ""
        self._tail_in_code ^= dropped.count("```") % 2 == 1
        self._tail = joined[len(dropped) :]
