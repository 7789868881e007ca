"""The gate's answer checks: held-out greedy answers compared with the baseline's against the references."""

from __future__ import annotations

import pytest

from training.answer_check import check, compare
from training.config import Gate
from training.evaluate import GateVerdict
from training.search import advice, describe

NEW_REFERENCE = "TRAVEL DESK: compare the routes, book refundable fares early and keep copies of every booking."
OLD_REFERENCE = "SUPPORT DESK: thank you, a ticket is open and we reply within a day."
BASE_ANSWER = "Lisbon is a lovely city with many sights; you should pack comfortable shoes."
GATE = Gate(answer_wins={"new": 0.75}, answer_holds={"old": 0.75}, answer_tolerance=0.1)
PASSED = GateVerdict(True, ())


def compared(new_answers: list[str], old_answers: list[str], redact=None):
    slices = ["new"] * len(new_answers) + ["old"] * len(old_answers)
    prompts = [f"travel question {i}" for i in range(len(new_answers))] + [
        f"support question {i}" for i in range(len(old_answers))
    ]
    references = [NEW_REFERENCE] * len(new_answers) + [OLD_REFERENCE] * len(old_answers)
    baseline = [OLD_REFERENCE] * len(new_answers) + [OLD_REFERENCE] * len(old_answers)
    return compare(slices, prompts, references, baseline, new_answers + old_answers, 0.1, redact)


def test_a_candidate_answering_the_new_topic_the_corrected_way_and_the_old_as_before_passes() -> None:
    new = ["TRAVEL DESK: compare the routes and book refundable fares early."] * 4
    found = compared(new, [OLD_REFERENCE] * 4)
    assert (found["new"].wins, found["new"].prompts, found["old"].holds) == (4, 4, 4)
    assert found["new"].candidate_rouge_l > found["new"].baseline_rouge_l
    assert found["new"].example is None
    verdict = check(GATE, PASSED, found)
    assert verdict.passed and verdict.limits == {"answers_wins:new": 0.75, "answers_holds:old": 0.75}


def test_half_the_new_answers_in_the_old_style_is_a_miss_with_evidence_and_advice() -> None:
    new = ["TRAVEL DESK: compare the routes and book refundable fares early."] * 2 + [OLD_REFERENCE, BASE_ANSWER]
    found = compared(new, [OLD_REFERENCE] * 4)
    assert found["new"].wins == 2 and found["new"].win_share == 0.5
    assert found["new"].example["candidate"] == OLD_REFERENCE and found["new"].example["prompt"] == "travel question 2"
    verdict = check(GATE, PASSED, found)
    assert not verdict.passed
    (miss,) = verdict.misses
    assert (miss.check, miss.value, miss.limit, miss.ceiling) == ("answers_wins:new", 0.5, 0.75, False)
    assert miss.by == pytest.approx(1 / 3)
    assert "new: 2/4 held-out answers closer to the reference than the baseline's (50% < 75%" in verdict.reasons[0]
    summary = {"trial": 0, "recipe": {"learning_rate": 1e-3, "steps": 10}, "passed": False}
    summary["misses"] = [{"check": miss.check, "value": miss.value, "limit": miss.limit, "by": round(miss.by, 4)}]
    assert "answers_wins:new by 33.3% (0.5 past 0.75)" in describe(summary)
    tips = " ".join(advice([summary]))
    assert "min_new_answer_wins" in tips and "held-out loss limits" not in tips


def test_an_old_topic_answered_differently_is_a_hold_miss_and_a_tie_is_no_win() -> None:
    found = compared([OLD_REFERENCE] * 4, [BASE_ANSWER] * 3 + [OLD_REFERENCE])
    assert found["new"].wins == 0, "an answer the baseline also gave is not closer"
    assert found["old"].holds == 1
    verdict = check(GATE, GateVerdict(False, ("forgetting: ...",)), found)
    assert [m.check for m in verdict.misses] == ["answers_wins:new", "answers_holds:old"]
    assert verdict.reasons[0] == "forgetting: ..." and len(verdict.reasons) == 3


def test_a_matching_answer_wins_even_against_a_matching_baseline_and_examples_are_redacted() -> None:
    found = compare(["new"], ["mail a@b.example"], [NEW_REFERENCE], [NEW_REFERENCE], [NEW_REFERENCE], 0.1)
    assert found["new"].wins == 1
    found = compare(["new"], ["mail a@b.example"], [NEW_REFERENCE], [OLD_REFERENCE], [BASE_ANSWER], 0.1, str.upper)
    assert found["new"].example["prompt"] == "MAIL A@B.EXAMPLE"


def test_a_slice_without_answers_cannot_pass() -> None:
    verdict = check(Gate(answer_wins={"new": 0.5}), PASSED, {})
    assert not verdict.passed and verdict.misses[0].check == "answers_wins:new"
    assert "no held-out answers were generated for eval set 'new'" in verdict.reasons


def test_each_earlier_generation_must_hold_not_only_their_average() -> None:
    """Two earlier topics in the old slice: losing half of one is a miss even when the slice's share passes."""
    slices = ["old"] * 8
    origins = ["desk-1"] * 4 + ["run-travel"] * 4
    references = [OLD_REFERENCE] * 4 + [NEW_REFERENCE] * 4
    candidate = [OLD_REFERENCE] * 4 + [NEW_REFERENCE] * 2 + [OLD_REFERENCE, BASE_ANSWER]
    found = compare(slices, [f"q{i}" for i in range(8)], references, references, candidate, 0.1, None, origins)
    assert found["old"].hold_share == 0.75  # the average alone would pass
    assert found["old"].origins == {"desk-1": [4, 4], "run-travel": [4, 2]}
    verdict = check(GATE_OLD_ONLY, PASSED, found)
    assert not verdict.passed and [m.value for m in verdict.misses] == [0.5]
    assert verdict.reasons[0].startswith("old (taught by run-travel): 2/4 held-out answers about as close")


def test_one_origin_keeps_the_slice_wide_hold() -> None:
    found = compare(["old"] * 4, list("abcd"), [OLD_REFERENCE] * 4, [OLD_REFERENCE] * 4, [OLD_REFERENCE] * 4, 0.1)
    assert found["old"].origins == {} and check(GATE_OLD_ONLY, PASSED, found).passed


GATE_OLD_ONLY = Gate(answer_holds={"old": 0.75}, answer_tolerance=0.1)
