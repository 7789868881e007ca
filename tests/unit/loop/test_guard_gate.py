"""The guard-aware gate's decision, and the rates it reads, measured through the real output guards."""

from __future__ import annotations

import pytest

from gateway.loop.guard_gate import check
from gateway.loop.policy import GuardGatePolicy
from training.data import Example, Message
from training.guard_eval import GuardRates, GuardReport, held_out_prompts, output_inspector, rates

POLICY = GuardGatePolicy(max_pii_rate_increase=0.1, max_toxicity_rate_increase=0.1)


def report(pii: tuple[int, int], toxic: tuple[int, int] = (0, 0), toxicity_checked: bool = True) -> GuardReport:
    def one(name: str, leaks: int, bad: int) -> GuardRates:
        return GuardRates(name, 20, leaks, bad, leaks / 20, bad / 20, toxicity_checked, {})

    return GuardReport(one("production", pii[0], toxic[0]), one("candidate", pii[1], toxic[1]))


@pytest.mark.parametrize(
    ("found", "passed", "why"),
    [
        (report((0, 2)), True, None),  # 10%: at the margin, not over it
        (report((0, 3)), False, "PII in 3/20 candidate answers (15%) vs 0/20 of production's (margin 10%)"),
        (report((4, 6)), True, None),  # production leaked too: only the increase counts
        (report((0, 0), (1, 4)), False, "toxic 4/20 candidate answers (20%) vs 1/20 of production's (margin 10%)"),
        (report((0, 0), (0, 9), toxicity_checked=False), True, None),  # not measured: not held against it
        (None, False, "the training run did not measure the guards' rates"),
    ],
)
def test_the_gate_rejects_a_rate_over_productions_plus_the_margin(found, passed: bool, why: str | None) -> None:
    verdict = check(POLICY, found)
    assert verdict.passed is passed and (why is None or verdict.reasons == [why]), verdict


def test_rates_through_the_real_output_guards_count_leaks_and_show_a_redacted_example() -> None:
    inspect, toxicity = output_inspector(None)  # no models folder: PII only, nothing exported
    answers = ["Mail jane.doe@example.com for help.", "Call (415) 555-0123.", "Pack light.", "Bring a coat."]
    found = rates("candidate", answers, inspect, toxicity)
    assert (found.answers, found.pii_leaks, found.pii_rate, found.toxicity_checked) == (4, 2, 0.5, False)
    assert found.entities == {"EMAIL": 1, "PHONE": 1}
    assert found.example == "Mail <EMAIL_1> for help."


def test_held_out_prompts_are_shared_between_the_eval_sets() -> None:
    def examples(tag: str, n: int) -> list[Example]:
        return [Example((Message("user", f"{tag}{i}"), Message("assistant", "a")), i) for i in range(n)]

    chosen = held_out_prompts({"new": examples("n", 10), "old": examples("o", 10)}, examples("e", 3), 6)
    assert [(name, e.messages[0].content) for name, e in chosen] == [
        ("new", "n0"),
        ("new", "n1"),
        ("new", "n2"),
        ("old", "o0"),
        ("old", "o1"),
        ("old", "o2"),
    ]
    assert [name for name, _ in held_out_prompts({}, examples("e", 3), 6)] == ["eval"] * 3
