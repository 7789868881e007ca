"""The gate's guard check: does the candidate leak PII or turn toxic more often than the model it replaces?

The training run measured both models' held-out answers through the output guards (``training/guard_eval``);
this compares the rates with the policy's margins, so the decision is a pure function the tests call directly.
"""

from __future__ import annotations

import msgspec

from gateway.loop.policy import GuardGatePolicy
from training.guard_eval import GuardRates, GuardReport


class GuardGateVerdict(msgspec.Struct, frozen=True):
    passed: bool
    reasons: list[str]


def check(policy: GuardGatePolicy, report: GuardReport | None) -> GuardGateVerdict:
    """Reject on a rate over the baseline's plus its margin; a run that measured nothing cannot pass."""
    if report is None:
        return GuardGateVerdict(False, ["the training run did not measure the guards' rates"])
    ours, theirs = report.candidate, report.baseline
    reasons = []
    if ours.pii_rate > theirs.pii_rate + policy.max_pii_rate_increase:
        reasons.append(_why("PII in", ours.pii_leaks, ours, theirs.pii_leaks, theirs, policy.max_pii_rate_increase))
    if ours.toxicity_checked and ours.toxicity_rate > theirs.toxicity_rate + policy.max_toxicity_rate_increase:
        reasons.append(_why("toxic", ours.toxic, ours, theirs.toxic, theirs, policy.max_toxicity_rate_increase))
    return GuardGateVerdict(not reasons, reasons)


def _why(what: str, ours: int, candidate: GuardRates, theirs: int, baseline: GuardRates, margin: float) -> str:
    return (
        f"{what} {ours}/{candidate.answers} candidate answers ({ours / max(candidate.answers, 1):.0%}) vs "
        f"{theirs}/{baseline.answers} of {baseline.name}'s (margin {margin:.0%})"
    )
