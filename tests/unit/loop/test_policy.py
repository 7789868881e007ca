"""The loop's policy: cooldown, minimum samples, daily limit, manual approval, duplicate alerts."""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.loop.policy import LoopPolicy, PastRun, decide
from gateway.loop.store import LoopStore

NOW = 1_000_000.0
POLICY = LoopPolicy(cooldown_s=3600, min_new_samples=20, max_jobs_per_day=2)


def past(created: float, *, accepted: bool = True, active: bool = False, fingerprint: str = "f1") -> PastRun:
    return PastRun(f"run-{created:.0f}", created, accepted, active, fingerprint)


def test_enough_samples_and_no_history_starts_a_run() -> None:
    decision = decide(POLICY, "f1", [], 25, NOW)
    assert decision.accepted and "25 new samples" in decision.reason and "auto" in decision.reason


def test_too_few_new_samples_is_skipped_with_the_counts() -> None:
    decision = decide(POLICY, "f1", [], 19, NOW)
    assert not decision.accepted and decision.reason == "too few new samples: 19 (the policy needs 20)"


def test_cooldown_counts_from_the_last_accepted_run_only() -> None:
    recent = past(NOW - 600)
    decision = decide(POLICY, "f2", [recent], 100, NOW)
    assert not decision.accepted and decision.reason.startswith("cooldown: run run-999400 started 600 s ago")
    # A skipped run does not start a cooldown; an old accepted one has expired.
    assert decide(POLICY, "f2", [past(NOW - 600, accepted=False), past(NOW - 4000)], 100, NOW).accepted


def test_daily_limit() -> None:
    history = [past(NOW - 20_000), past(NOW - 10_000)]
    decision = decide(POLICY, "f3", history, 100, NOW)
    assert not decision.accepted and decision.reason.startswith("daily limit: 2 runs")
    assert decide(POLICY, "f3", [past(NOW - 90_000), past(NOW - 10_000)], 100, NOW).accepted


def test_duplicate_alert_while_a_run_is_active() -> None:
    running = past(NOW - 10, active=True, fingerprint="same")
    same = decide(POLICY, "same", [running], 100, NOW)
    other = decide(POLICY, "other", [running], 100, NOW)
    assert not same.accepted and same.reason.endswith("(the same alert)")
    assert not other.accepted and other.reason.startswith("duplicate: run run-999990 is still in progress")


def test_manual_mode_accepts_into_approval() -> None:
    decision = decide(LoopPolicy(approval="manual", min_new_samples=1), "f", [], 1, NOW)
    assert decision.accepted and "waiting for approval" in decision.reason


def add_samples(store: LoopStore, alias: str, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        store.add_feedback(f"req-{alias}-{i}", alias, f"{alias}@1", None, None, f"better answer {i}")


def test_store_admits_one_run_per_alert_burst_and_records_every_decision(tmp_path: Path) -> None:
    store = LoopStore(f"sqlite:///{tmp_path / 'state.db'}")
    policy = LoopPolicy(min_new_samples=3, cooldown_s=0)
    add_samples(store, "support", 2)
    skipped = store.admit("support", "fp", policy, production="support@1", request_ids=[], alert={})
    assert skipped.status == "skipped" and "too few new samples: 2" in skipped.reason
    add_samples(store, "support", 1, start=1)  # a second correction of the same request is not a new sample
    assert store.admit("support", "fp", policy, production="support@1", request_ids=[], alert={}).status == "skipped"
    add_samples(store, "support", 1, start=2)
    add_samples(store, "other", 10)  # another alias's feedback does not count
    results: list = []

    def admit() -> None:
        results.append(store.admit("support", "fp", policy, production="support@1", request_ids=["a"], alert={}))

    threads = [threading.Thread(target=admit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(run.status for run in results)
    assert statuses == ["queued", "skipped", "skipped", "skipped"], [r.reason for r in results]
    assert all("duplicate" in run.reason for run in results if run.status == "skipped")
    listed = store.list("support")
    assert len(listed) == 6 and [e.step for e in listed[0].timeline] == ["alert", "decision"]
    assert store.admit("nobody", "fp", policy, production=None, request_ids=[], alert={}).reason == (
        "`nobody` has no production version to retrain"
    )
