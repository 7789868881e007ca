"""The canary verdict from online signals, and how a loop run's training data is put together."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gateway.loop.canary import Signals, judge, pair, reference_fit, signals
from gateway.loop.dataset import assemble, sample_from_log
from gateway.loop.policy import CanaryPolicy
from monitor.request_log import GuardDecision, RequestRecord
from training.config import DataSettings
from training.prepare import prepare

POLICY = CanaryPolicy(min_requests=10, max_s=600)


def record(version: str, status: int = 200, latency: float = 100.0, blocked: bool = False) -> RequestRecord:
    decisions = (GuardDecision("toxicity", "output", "toxic", "block"),) if blocked else ()
    return RequestRecord(
        id=f"{version}-{status}-{latency}-{blocked}",
        time=0.0,
        alias="support",
        route="/v1/chat/completions",
        status=status,
        latency_ms=latency,
        version=version,
        guard_decisions=decisions,
    )


def healthy(version: str, n: int = 60, ratings: list[int] | None = None) -> Signals:
    return signals(version, [record(version, latency=100 + i) for i in range(n)], ratings or [])


def test_signals_per_version() -> None:
    records = [record("s@2", 503), record("s@2", blocked=True), record("s@2"), record("s@2"), record("s@1")]
    found = signals("s@2", records, [1, -1])
    assert (found.requests, found.error_rate, found.block_rate, found.mean_rating) == (4, 0.25, 0.25, 0.0)
    assert (found.errors, found.blocked, found.up_votes, found.answered) == (1, 1, 1, 3)


def test_pair_counts_slow_answers_against_productions_p95() -> None:
    records = [record("s@1", latency=100 + i) for i in range(20)] + [record("s@2", latency=ms) for ms in (90, 500)]
    ours, theirs = pair(records, "s@2", "s@1", {})
    assert theirs.p95_ms is not None and 118 < theirs.p95_ms < 119
    assert (ours.slow, ours.answered, theirs.slow) == (1, 2, 0)


def test_waits_for_enough_canary_requests_until_its_time_is_up() -> None:
    few = healthy("s@2", n=5)
    assert judge(POLICY, few, healthy("s@1"), elapsed_s=60) is None
    late = judge(POLICY, few, healthy("s@1"), elapsed_s=601)
    assert late is not None and not late.promote and "only 5 canary requests" in late.reasons[0]


def test_healthy_canary_without_ratings_is_promoted_once_no_harm_is_shown() -> None:
    assert judge(POLICY, healthy("s@2", n=20), healthy("s@1"), elapsed_s=60) is None  # not enough evidence yet
    verdict = judge(POLICY, healthy("s@2"), healthy("s@1"), elapsed_s=60)
    assert verdict is not None and verdict.promote and verdict.confidence == 0.95, verdict
    assert {t.signal: t.decision for t in verdict.tests} == {"error_rate": "h0", "block_rate": "h0", "latency": "h0"}


def served(version: str, n: int = 60, **kwargs) -> list[RequestRecord]:
    return [record(version, **kwargs) for _ in range(n)]


@pytest.mark.parametrize(
    ("canary", "ratings", "why"),
    [
        (served("s@2", 10, status=500) + served("s@2", 50), [], "error rate 16.7% vs production 0.0%"),
        (served("s@2", 9, blocked=True) + served("s@2", 51), [], "guard block rate 15.0%"),
        (served("s@2", latency=900), [], "share slower than production's p95"),
        (served("s@2"), [-1] * 6, "up-vote share 0.0% vs production 100.0%: worse"),
    ],
)
def test_each_bad_signal_rolls_back(canary: list[RequestRecord], ratings: list[int], why: str) -> None:
    production = [record("s@1", latency=100 + i) for i in range(60)]
    ours, theirs = pair(canary + production, "s@2", "s@1", {"s@2": ratings, "s@1": [1] * 6})
    verdict = judge(POLICY, ours, theirs, elapsed_s=60)
    assert verdict is not None and not verdict.promote and any(why in reason for reason in verdict.reasons), verdict
    assert verdict.decided_by == "sprt" and verdict.confidence == 0.9


def test_a_reference_that_fits_the_canary_traffic_worse_than_production_rolls_back() -> None:
    traffic = np.array([[1.0, 0.0], [0.9, 0.1]])
    near, far = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    good = judge(POLICY, healthy("s@2"), healthy("s@1"), 60, reference_fit(traffic, near, far))
    bad = judge(POLICY, healthy("s@2"), healthy("s@1"), 60, reference_fit(traffic, far, near))
    assert good is not None and good.promote
    assert bad is not None and not bad.promote and "farther from its own reference" in bad.reasons[0]


def test_sample_from_log_keeps_the_conversation_and_teaches_the_correction() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <EMAIL_1>"}]
    logged = RequestRecord(
        id="r", time=0, alias="a", route="/v1/chat/completions", status=200, latency_ms=1,
        prompt=json.dumps(messages), completion="old answer",
    )  # fmt: skip
    assert sample_from_log(logged, "new answer") == {
        "messages": [*messages, {"role": "assistant", "content": "new answer"}]
    }
    assert sample_from_log(logged, None)["messages"][-1]["content"] == "old answer"
    completion = RequestRecord(
        id="c", time=0, alias="a", route="/v1/completions", status=200, latency_ms=1, prompt="Once", completion=" upon"
    )
    assert sample_from_log(completion, None) == {"prompt": "Once", "completion": " upon"}
    unlogged = RequestRecord(id="u", time=0, alias="a", route="/v1/chat/completions", status=200, latency_ms=1)
    assert sample_from_log(unlogged, "x") is None


def test_assemble_holds_out_new_and_old_samples_apart_from_train_and_replay(tmp_path: Path) -> None:
    registered = tmp_path / "registered.jsonl"
    old = [{"prompt": f"old {i}", "completion": f"a{i}"} for i in range(20)]
    registered.write_text("\n".join(json.dumps(r) for r in old) + "\n")
    new = [{"prompt": f"new {i}", "completion": f"b{i}"} for i in range(10)]
    assembled = assemble(tmp_path / "out", registered, new, holdout_share=0.2)

    def read(path: str) -> list[str]:
        return [json.loads(line)["prompt"] for line in Path(path).read_text().splitlines()]

    train, replay = read(assembled.train), read(assembled.replay)
    held_new, held_old = read(assembled.eval_sets["new"]), read(assembled.eval_sets["old"])
    assert (len(train), len(replay), len(held_new), len(held_old)) == (8, 16, 2, 4)
    assert all(p.startswith("new") for p in train + held_new) and all(p.startswith("old") for p in replay + held_old)
    assert not set(train + replay) & set(held_new + held_old)
    assert set(train + replay + held_new + held_old) == {r["prompt"] for r in old + new}
    assert sorted(read(assembled.dataset)) == sorted(r["prompt"] for r in old + new), "the whole history registers"
    assert assembled.counts == {"registered": 20, "new": 10, "train": 8, "replay": 16, "eval_new": 2, "eval_old": 4}
    assert assemble(tmp_path / "first", None, new, holdout_share=0.2).replay == "", "no registered data, no replay"
    with pytest.raises(ValueError, match="3 new samples"):
        assemble(tmp_path / "few", registered, new[:3], holdout_share=0.2)


def test_a_few_new_samples_are_neither_drowned_by_nor_starved_of_the_replay(tmp_path: Path) -> None:
    registered = tmp_path / "registered.jsonl"
    registered.write_text("".join(json.dumps({"prompt": f"old {i}", "completion": "a"}) + "\n" for i in range(100)))
    new = [{"prompt": f"new question {i}", "completion": f"new answer {i}"} for i in range(10)]
    assembled = assemble(tmp_path / "out", registered, new, holdout_share=0.2)
    assert assembled.counts["eval_old"] == 20  # the old topic is still judged on its full held-out share

    def train_split(new_share: float) -> list[str]:
        config = DataSettings(replay_path=assembled.replay, new_share=new_share, min_eval=1, eval_share=0.0)
        return [example.prompt for example in prepare(assembled.train, config).train]

    for new_share, replay_per_new in ((0.5, 1), (0.25, 3)):
        train = train_split(new_share)
        own = sum(p.startswith("new") for p in train)
        assert own >= 7 and len(train) - own == replay_per_new * own, (new_share, own, len(train))
    assert len(train_split(0.0)) == 8 + 80 - 1, "0: every record replayed (one of the 88 validates)"


def test_each_generation_is_held_out_judged_first_and_replayed_in_turn(tmp_path: Path) -> None:
    """A second generation's few corrections beside the first dataset's many: eval-old interleaves the two (the
    answer check reads its first prompts) and the replay draws from each in turn."""
    first = tmp_path / "first"
    first.write_text("".join(json.dumps({"prompt": f"support {i}", "completion": "a"}) + "\n" for i in range(100)))
    travel = [{"prompt": f"travel {i}", "completion": "b"} for i in range(20)]
    gen2 = assemble(tmp_path / "gen2", first, travel, holdout_share=0.2, origin="run-2")
    registered = [json.loads(line) for line in Path(gen2.dataset).read_text().splitlines()]
    assert {r.get("origin") for r in registered} == {None, "run-2"}, "the new samples carry the run that taught them"
    cooking = [{"prompt": f"cooking {i}", "completion": "c"} for i in range(20)]
    gen3 = assemble(tmp_path / "gen3", Path(gen2.dataset), cooking, holdout_share=0.2, origin="run-3")
    held_old = [json.loads(line)["prompt"] for line in Path(gen3.eval_sets["old"]).read_text().splitlines()]
    assert len(held_old) == 20 + 4 and [p.split()[0] for p in held_old[:8]] == ["support", "travel"] * 4
    assert gen3.counts["replay"] == 80 + 16

    config = DataSettings(replay_path=gen3.replay, new_share=0.5, min_eval=1, eval_share=0.0)
    train = [example.prompt.split()[0] for example in prepare(gen3.train, config).train]
    own = train.count("cooking")
    travel, support = train.count("travel"), train.count("support")
    assert travel + support == own and abs(travel - support) <= 1, train
