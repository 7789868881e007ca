"""The values that cross the guards boundary: findings, decisions and verdicts.

A :class:`Decision` never carries the matched text, so the gateway can count it in Prometheus and the
monitor can write it to the audit log without leaking what was redacted.
"""

from __future__ import annotations

from typing import Literal

import msgspec

# "flag": let the text through unchanged, but count and log the decision.
Action = Literal["allow", "flag", "redact", "mask", "block"]
Stage = Literal["input", "output"]

# Stronger actions win when several findings meet in one verdict.
ACTION_RANK: dict[str, int] = {"allow": 0, "flag": 1, "mask": 2, "redact": 3, "block": 4}


class Finding(msgspec.Struct, frozen=True):
    """One detected span of ``text[start:end]``, with the action the policy gave it."""

    entity: str
    start: int
    end: int
    guard: str
    action: Action = "allow"
    score: float = 1.0


class Decision(msgspec.Struct, frozen=True):
    """What one guard did at one stage, aggregated per entity: safe to count and to log."""

    guard: str
    stage: Stage
    entity: str
    action: Action
    count: int = 1
    # A classifier's score (toxicity category, injection); None for pattern entities (their score is always 1).
    score: float | None = None


class Verdict(msgspec.Struct, frozen=True):
    """The outcome of one stage on one text: the text to use instead, and why."""

    text: str
    action: Action
    decisions: tuple[Decision, ...] = ()

    @property
    def blocked(self) -> bool:
        return self.action == "block"


def strongest(actions: list[Action]) -> Action:
    return max(actions, key=ACTION_RANK.__getitem__, default="allow")
