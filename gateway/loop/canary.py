"""The canary's online evidence, read from the request log, and the verdict: promote, roll back, or keep collecting.

Signals per version over the canary period: errors, guard blocks, requests slower than production's p95,
up-votes among the ratings, and how well each version's reference fits the canary's own prompts (the
candidate was trained for this traffic, so its reference should sit nearer to it than production's does).
The verdict is sequential (``gateway/loop/sequential.py``): it acts as soon as the evidence reaches the
policy's error probabilities, not after a fixed number of requests.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

import msgspec
import numpy as np

from gateway.loop.policy import CanaryPolicy
from gateway.loop.sequential import Sprt, rate_bound, sprt
from monitor.reference import user_text
from monitor.request_log import RequestRecord

LATENCY_SLACK_MS = 50.0


class Signals(msgspec.Struct, frozen=True):
    version: str
    requests: int
    errors: int
    blocked: int
    error_rate: float
    block_rate: float
    p95_ms: float | None
    # Answered requests slower than the threshold the pair was measured against (production's p95 + slack).
    slow: int
    answered: int
    ratings: int
    up_votes: int
    mean_rating: float | None
    # This version's ratings paired in order with the other version's: pairs it won (up against down) and lost.
    pairs_won: int = 0
    pairs_lost: int = 0


class ReferenceFit(msgspec.Struct, frozen=True):
    """Distance from the mean embedding of the canary's prompts to each version's reference mean."""

    prompts: int
    candidate_distance: float
    production_distance: float


class CanaryVerdict(msgspec.Struct, frozen=True):
    """Promote the canary or roll it back, every reason, and the tests (with their likelihood ratios) it acted on."""

    promote: bool
    reasons: list[str]
    decided_by: Literal["sprt", "timeout", "reference_fit"] = "sprt"
    # The probability the verdict is right under the policy's hypotheses: 1 - alpha to promote (a candidate
    # worse by the effect size passes at most alpha of the time), 1 - beta to roll back.
    confidence: float | None = None
    tests: list[Sprt] = msgspec.field(default_factory=list)


def signals(
    version: str, records: Sequence[RequestRecord], ratings: Sequence[int], slow_ms: float | None = None
) -> Signals:
    mine = [record for record in records if record.version == version]
    count = len(mine)
    errors = sum(record.status >= 500 for record in mine)
    blocked = sum(any(d.action == "block" for d in record.guard_decisions) for record in mine)
    latencies = [record.latency_ms for record in mine if record.status < 400]
    return Signals(
        version=version,
        requests=count,
        errors=errors,
        blocked=blocked,
        error_rate=errors / count if count else 0.0,
        block_rate=blocked / count if count else 0.0,
        p95_ms=float(np.percentile(latencies, 95)) if latencies else None,
        slow=sum(latency > slow_ms for latency in latencies) if slow_ms is not None else 0,
        answered=len(latencies),
        ratings=len(ratings),
        up_votes=sum(rating > 0 for rating in ratings),
        mean_rating=float(np.mean(ratings)) if ratings else None,
    )


def pair(
    records: Sequence[RequestRecord], candidate: str, production: str, ratings: dict[str, list[int]]
) -> tuple[Signals, Signals]:
    """Both versions' signals, "slow" meaning slower than production's p95 (plus slack) for both."""
    ours, theirs = ratings.get(candidate, []), ratings.get(production, [])
    p95 = signals(production, records, theirs).p95_ms
    slow_ms = p95 + LATENCY_SLACK_MS if p95 is not None else None
    pairs = list(zip(ours, theirs, strict=False))
    won = sum(a > 0 >= b for a, b in pairs)
    lost = sum(b > 0 >= a for a, b in pairs)
    return (
        msgspec.structs.replace(signals(candidate, records, ours, slow_ms), pairs_won=won, pairs_lost=lost),
        msgspec.structs.replace(signals(production, records, theirs, slow_ms), pairs_won=lost, pairs_lost=won),
    )


def canary_prompts(records: Sequence[RequestRecord], version: str) -> list[str]:
    """The user words of the canary's logged prompts (as drift detection embeds them)."""
    out = []
    for record in records:
        if record.version != version or not record.prompt:
            continue
        try:
            messages = json.loads(record.prompt)
        except json.JSONDecodeError:
            out.append(record.prompt)
            continue
        text = user_text(messages) if isinstance(messages, list) else str(messages)
        if text.strip():
            out.append(text)
    return out


def reference_fit(embeddings: np.ndarray, candidate_ref: np.ndarray, production_ref: np.ndarray) -> ReferenceFit:
    centre = embeddings.mean(axis=0)
    return ReferenceFit(
        prompts=len(embeddings),
        candidate_distance=round(float(np.linalg.norm(centre - candidate_ref.mean(axis=0))), 5),
        production_distance=round(float(np.linalg.norm(centre - production_ref.mean(axis=0))), 5),
    )


def tests(policy: CanaryPolicy, canary: Signals, production: Signals) -> list[Sprt]:
    """One SPRT per signal. Harm signals: H0 "no worse than production", H1 "worse by the effect size";
    production's rates are taken at the upper edge of their 1 - alpha interval. Ratings (once any arrive;
    undecided until both versions have ``min_ratings``) pair each candidate vote with a production vote;
    among the pairs that disagree the candidate wins a share 1/2 - effect (H0, worse) or 1/2 + effect (H1,
    better). Two equally liked versions have no drift between the two, so the test keeps collecting the
    longest there and ``max_s`` decides."""
    edge = 1 - policy.alpha

    def harm(name: str, events: str, trials: str, effect: float) -> Sprt:
        p0 = rate_bound(getattr(production, events), getattr(production, trials), edge)
        return sprt(name, getattr(canary, events), getattr(canary, trials), p0, p0 + effect, policy.alpha, policy.beta)

    found = [
        harm("error_rate", "errors", "requests", policy.error_effect),
        harm("block_rate", "blocked", "requests", policy.block_effect),
    ]
    if canary.answered and production.answered:
        found.append(harm("latency", "slow", "answered", policy.latency_effect))
    if canary.ratings or production.ratings:
        # Once votes arrive the rating test must decide too; it stays open until both sides have min_ratings.
        low, high = 0.5 - policy.rating_effect, 0.5 + policy.rating_effect
        disagreeing = canary.pairs_won + canary.pairs_lost
        rating = sprt("rating", canary.pairs_won, disagreeing, low, high, policy.alpha, policy.beta)
        if min(canary.ratings, production.ratings) < policy.min_ratings:
            rating = msgspec.structs.replace(rating, decision="continue")
        found.append(rating)
    return found


def judge(
    policy: CanaryPolicy,
    canary: Signals,
    production: Signals,
    elapsed_s: float,
    fit: ReferenceFit | None = None,
) -> CanaryVerdict | None:
    """None while the evidence is short of the policy's error probabilities (or the minimum duration has not
    passed); otherwise promote or roll back. At ``max_s`` without a decision the policy's ``on_timeout`` holds."""
    timed_out = elapsed_s >= policy.max_s
    if canary.requests < policy.min_requests or elapsed_s < policy.min_s:
        if not timed_out:
            return None
        return CanaryVerdict(
            False,
            [f"only {canary.requests} canary requests in {elapsed_s:.0f} s (need {policy.min_requests})"],
            "timeout",
        )
    found = tests(policy, canary, production)
    worse = [t for t in found if t.decision == ("h0" if t.signal == "rating" else "h1")]
    if worse:
        reasons = [_why(t, canary, production) for t in worse]
        return CanaryVerdict(False, reasons, "sprt", round(1 - policy.beta, 4), found)
    if fit is not None and fit.candidate_distance > fit.production_distance:
        reason = (
            f"the canary's prompts sit farther from its own reference ({fit.candidate_distance:.3f}) "
            f"than from production's ({fit.production_distance:.3f})"
        )
        return CanaryVerdict(False, [reason], "reference_fit", None, found)
    if all(t.decision != "continue" for t in found):
        reasons = [_why(t, canary, production) for t in found]
        return CanaryVerdict(True, reasons, "sprt", round(1 - policy.alpha, 4), found)
    if not timed_out:
        return None
    open_tests = ", ".join(f"{t.signal} (log LR {t.llr:+.2f} in [{t.lower:+.2f}, {t.upper:+.2f}])" for t in found)
    reason = f"no decision after {elapsed_s:.0f} s: {open_tests}; the policy says {policy.on_timeout}"
    return CanaryVerdict(policy.on_timeout == "promote", [reason], "timeout", None, found)


def _why(test: Sprt, canary: Signals, production: Signals) -> str:
    rates = {
        "error_rate": (canary.error_rate, production.error_rate),
        "block_rate": (canary.block_rate, production.block_rate),
        "latency": (_share(canary.slow, canary.answered), _share(production.slow, production.answered)),
        "rating": (_share(canary.up_votes, canary.ratings), _share(production.up_votes, production.ratings)),
    }
    names = {
        "error_rate": "error rate",
        "block_rate": "guard block rate",
        "latency": f"share slower than production's p95 ({production.p95_ms or 0:.0f} ms)",
        "rating": "up-vote share",
    }
    ours, theirs = rates[test.signal]
    if test.signal == "rating":
        verdict = "better" if test.decision == "h1" else "worse"
    else:
        verdict = "worse" if test.decision == "h1" else "no worse"
    return (
        f"{names[test.signal]} {ours:.1%} vs production {theirs:.1%}: {verdict} "
        f"(log LR {test.llr:+.2f}, bounds {test.lower:+.2f}/{test.upper:+.2f}, {test.k}/{test.n})"
    )


def _share(k: int, n: int) -> float:
    return k / n if n else 0.0
