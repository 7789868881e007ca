"""The sequential canary verdict on seeded simulated traffic at known effect sizes, and Wald's test itself."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest

from gateway.loop.canary import CanaryVerdict, judge, pair
from gateway.loop.policy import CanaryPolicy
from gateway.loop.sequential import bounds, sprt
from monitor.request_log import GuardDecision, RequestRecord

POLICY = CanaryPolicy(share=0.5, min_requests=20, min_s=0, max_s=2000)


@dataclass(frozen=True)
class Arm:
    """One version's true behaviour: error and guard-block probabilities, latency, and how users vote."""

    error: float = 0.01
    block: float = 0.02
    latency_ms: float = 300.0
    up_vote: float = 0.6
    rated: float = 0.3  # share of answers that get a vote


def simulate(policy: CanaryPolicy, candidate: Arm, production: Arm, seed: int) -> tuple[CanaryVerdict | None, int]:
    """One request per simulated second, split by ``policy.share``; judged every 10 s like the controller."""
    rng = random.Random(seed)
    records: list[RequestRecord] = []
    ratings: dict[str, list[int]] = {"s@2": [], "s@1": []}
    for second in range(1, int(policy.max_s) + 1):
        version, arm = ("s@2", candidate) if rng.random() < policy.share else ("s@1", production)
        blocked = rng.random() < arm.block
        records.append(
            RequestRecord(
                id=str(second), time=second, alias="s", route="/v1/chat/completions",
                status=500 if rng.random() < arm.error else 200, latency_ms=rng.gauss(arm.latency_ms, 40),
                version=version,
                guard_decisions=(GuardDecision("toxicity", "output", "toxic", "block"),) if blocked else (),
            )
        )  # fmt: skip
        if rng.random() < arm.rated:
            ratings[version].append(1 if rng.random() < arm.up_vote else -1)
        if second % 10 == 0:
            ours, theirs = pair(records, "s@2", "s@1", ratings)
            verdict = judge(policy, ours, theirs, float(second))
            if verdict is not None:
                return verdict, second
    return None, int(policy.max_s)


@pytest.mark.parametrize("seed", range(5))
def test_a_clearly_better_candidate_is_promoted(seed: int) -> None:
    verdict, at = simulate(POLICY, Arm(up_vote=0.9), Arm(up_vote=0.4), seed)
    assert verdict is not None and verdict.promote and verdict.decided_by == "sprt", verdict
    assert verdict.confidence == 1 - POLICY.alpha and at < POLICY.max_s
    decisions = {t.signal: t.decision for t in verdict.tests}
    assert decisions == {"error_rate": "h0", "block_rate": "h0", "latency": "h0", "rating": "h1"}
    rating = next(t for t in verdict.tests if t.signal == "rating")
    assert rating.llr >= rating.upper == round(math.log((1 - POLICY.beta) / POLICY.alpha), 4)


@pytest.mark.parametrize(
    ("candidate", "signal"),
    [
        (Arm(error=0.15, rated=0), "error_rate"),
        (Arm(block=0.2, rated=0), "block_rate"),
        (Arm(latency_ms=600, rated=0), "latency"),
        (Arm(up_vote=0.2), "rating"),
    ],
)
@pytest.mark.parametrize("seed", range(3))
def test_a_clearly_worse_candidate_is_rolled_back(candidate: Arm, signal: str, seed: int) -> None:
    """Each harm signal alone (no ratings, so no other test can decide first), and ratings alone."""
    verdict, _ = simulate(POLICY, candidate, Arm(rated=candidate.rated), seed)
    assert verdict is not None and not verdict.promote and verdict.decided_by == "sprt", verdict
    assert verdict.confidence == 1 - POLICY.beta
    worse = next(t for t in verdict.tests if t.signal == signal)
    assert worse.decision == ("h0" if signal == "rating" else "h1")


@pytest.mark.parametrize("seed", range(3))
def test_equal_versions_keep_collecting_until_max_duration_then_the_safe_default_holds(seed: int) -> None:
    """Equal arms give the rating test no drift: Wald's expected sample size there, -lower x upper / step^2,
    is ~40 disagreeing pairs, while 600 s at a 10% rating rate bring ~15. The harm tests clear early."""
    policy = CanaryPolicy(share=0.5, min_requests=20, max_s=600)
    lower, upper = bounds(policy.alpha, policy.beta)
    step = math.log((0.5 + policy.rating_effect) / (0.5 - policy.rating_effect))
    assert -lower * upper / step**2 > 35
    equal = Arm(rated=0.1)
    verdict, at = simulate(policy, equal, equal, seed)
    assert verdict is not None and at == policy.max_s, (verdict, at)
    assert not verdict.promote and verdict.decided_by == "timeout" and "the policy says rollback" in verdict.reasons[0]
    assert next(t for t in verdict.tests if t.signal == "rating").decision == "continue"

    promoting = CanaryPolicy(share=0.5, min_requests=20, max_s=600, on_timeout="promote")
    verdict, at = simulate(promoting, equal, equal, seed)
    assert verdict is not None and verdict.promote and verdict.decided_by == "timeout" and at == 600


def test_no_verdict_before_the_minimum_duration_however_strong_the_evidence() -> None:
    policy = CanaryPolicy(share=0.5, min_requests=20, min_s=300, max_s=2000)
    verdict, at = simulate(policy, Arm(error=0.5), Arm(), 0)
    assert verdict is not None and not verdict.promote and at == 300
    early, early_at = simulate(CanaryPolicy(share=0.5, min_requests=20, max_s=2000), Arm(error=0.5), Arm(), 0)
    assert early is not None and not early.promote and early_at < 300


def test_no_verdict_before_the_minimum_number_of_canary_requests() -> None:
    policy = CanaryPolicy(share=0.05, min_requests=40, max_s=2000)
    verdict, at = simulate(policy, Arm(error=0.9), Arm(), 1)
    assert verdict is not None and not verdict.promote and verdict.tests[0].n >= 40 and at > 400


def test_wald_bounds_and_likelihood_ratio() -> None:
    lower, upper = bounds(0.05, 0.1)
    assert lower == pytest.approx(math.log(0.1 / 0.95)) and upper == pytest.approx(math.log(0.9 / 0.05))
    worse = sprt("error_rate", 5, 20, 0.01, 0.1, 0.05, 0.1)
    assert worse.llr == pytest.approx(5 * math.log(10) + 15 * math.log(0.9 / 0.99), abs=1e-4)
    assert worse.decision == "h1"
    assert sprt("error_rate", 0, 30, 0.01, 0.1, 0.05, 0.1).decision == "h0"
    assert sprt("error_rate", 1, 10, 0.01, 0.1, 0.05, 0.1).decision == "continue"
    # A zero rate is kept off zero: one event does not make the ratio infinite.
    assert math.isfinite(sprt("error_rate", 1, 1, 0.0, 0.05, 0.05, 0.1).llr)
