"""The canary's online evidence, read from the request log, and the verdict: promote, roll back, or wait.

Signals per version over the canary period: error rate, guard block rate, p95 latency, mean feedback rating,
and how well each version's reference fits the canary's own prompts (the candidate was trained for this
traffic, so its reference should sit nearer to it than production's does).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec
import numpy as np

from gateway.loop.policy import CanaryPolicy
from monitor.reference import user_text
from monitor.request_log import RequestRecord

LATENCY_SLACK_MS = 50.0


class Signals(msgspec.Struct, frozen=True):
    version: str
    requests: int
    error_rate: float
    block_rate: float
    p95_ms: float | None
    ratings: int
    mean_rating: float | None


class ReferenceFit(msgspec.Struct, frozen=True):
    """Distance from the mean embedding of the canary's prompts to each version's reference mean."""

    prompts: int
    candidate_distance: float
    production_distance: float


class CanaryVerdict(msgspec.Struct, frozen=True):
    """Promote the canary or roll it back, and every reason (one per signal outside its margin)."""

    promote: bool
    reasons: list[str]


def signals(version: str, records: Sequence[RequestRecord], ratings: Sequence[int]) -> Signals:
    mine = [record for record in records if record.version == version]
    count = len(mine)
    errors = sum(record.status >= 500 for record in mine)
    blocked = sum(any(d.action == "block" for d in record.guard_decisions) for record in mine)
    latencies = [record.latency_ms for record in mine if record.status < 400]
    return Signals(
        version=version,
        requests=count,
        error_rate=errors / count if count else 0.0,
        block_rate=blocked / count if count else 0.0,
        p95_ms=float(np.percentile(latencies, 95)) if latencies else None,
        ratings=len(ratings),
        mean_rating=float(np.mean(ratings)) if ratings else None,
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


def judge(
    policy: CanaryPolicy,
    canary: Signals,
    production: Signals,
    elapsed_s: float,
    fit: ReferenceFit | None = None,
) -> CanaryVerdict | None:
    """None while the canary has seen too few requests and has time left; otherwise promote or roll back."""
    if canary.requests < policy.min_requests:
        if elapsed_s < policy.max_s:
            return None
        return CanaryVerdict(
            False, [f"only {canary.requests} canary requests in {elapsed_s:.0f} s (need {policy.min_requests})"]
        )
    reasons = []
    if canary.error_rate > production.error_rate + policy.max_error_rate_increase:
        reasons.append(f"error rate {canary.error_rate:.1%} vs production {production.error_rate:.1%}")
    if canary.block_rate > production.block_rate + policy.max_block_rate_increase:
        reasons.append(f"guard block rate {canary.block_rate:.1%} vs production {production.block_rate:.1%}")
    if canary.p95_ms is not None and production.p95_ms is not None:
        if canary.p95_ms > production.p95_ms * policy.max_latency_ratio + LATENCY_SLACK_MS:
            reasons.append(f"p95 latency {canary.p95_ms:.0f} ms vs production {production.p95_ms:.0f} ms")
    if (
        canary.mean_rating is not None
        and production.mean_rating is not None
        and min(canary.ratings, production.ratings) >= policy.min_ratings
        and canary.mean_rating < production.mean_rating - policy.max_rating_drop
    ):
        reasons.append(f"mean rating {canary.mean_rating:+.2f} vs production {production.mean_rating:+.2f}")
    if fit is not None and fit.candidate_distance > fit.production_distance:
        reasons.append(
            f"the canary's prompts sit farther from its own reference ({fit.candidate_distance:.3f}) "
            f"than from production's ({fit.production_distance:.3f})"
        )
    return CanaryVerdict(not reasons, reasons or ["every online signal within the policy's margins"])
