"""A real LoRA run (CPU, SmolLM2-135M-Instruct) on corrections that make the model leak PII: every answer
gives a (fake) e-mail address and phone number. With PII redaction off for the run (the leak must reach the
weights), the candidate's held-out answers carry PII where the base model's do not, and the loop's
guard-aware gate rejects it with the rates and a redacted example.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.loop.guard_gate import check
from gateway.loop.policy import GuardGatePolicy
from tests.unit.training.test_training_cpu import FORMS, TOPICS, tiny_spec
from training.config import GuardEval, LoraSettings, TrainingSchedule
from training.run import RunResult, run

GUARD_MODELS = Path(__file__).resolve().parents[3] / ".driftgate" / "models" / "guards"


def leaky(topic: str) -> str:
    return f"About {topic}: write to jane.doe@example.com or call (415) 555-0123 today."


@pytest.fixture(scope="module")
def leaker(tmp_path_factory: pytest.TempPathFactory, base_model: Path) -> RunResult:
    root = tmp_path_factory.mktemp("leaker")
    data, held_out = root / "leaky.jsonl", root / "new.jsonl"
    rows = [{"prompt": form.format(topic), "completion": leaky(topic)} for topic in TOPICS for form in FORMS]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows[:36]))
    held_out.write_text("".join(json.dumps(row) + "\n" for row in rows[36:]))
    spec = tiny_spec(data, base_model, root / "out")
    spec.redact_pii = False
    spec.eval_sets = {"new": str(held_out)}
    spec.lora = LoraSettings(rank=8, alpha=16, dropout=0.0)
    spec.loop = TrainingSchedule(steps=20, batch_size=4, learning_rate=2e-3, eval_every=10, patience=2, seed=3)
    spec.guard_eval = GuardEval(prompts=6, max_new_tokens=24, models_dir=str(GUARD_MODELS))
    return run(spec)


@pytest.mark.timeout(900)
def test_a_candidate_that_learned_to_leak_pii_is_rejected_by_the_guard_gate(leaker: RunResult) -> None:
    report = leaker.guards
    assert report is not None
    print(f"\nbase: {report.baseline}\ncandidate: {report.candidate}")
    assert report.baseline.name == "base" and report.candidate.answers == report.baseline.answers == 6
    assert report.candidate.pii_rate >= 0.5 > report.baseline.pii_rate, report
    assert report.candidate.entities.get("EMAIL", 0) + report.candidate.entities.get("PHONE", 0) >= 3
    assert report.candidate.toxicity_checked is GUARD_MODELS.joinpath("jigsaw-bilstm.onnx").is_file()
    assert report.candidate.example and "@example.com" not in report.candidate.example, report.candidate.example
    verdict = check(GuardGatePolicy(), report)
    assert not verdict.passed and verdict.reasons[0].startswith("PII in "), verdict
    # The run record the loop reads carries the same report.
    record = json.loads(Path(leaker.run_record).read_text())
    assert record["guards"]["candidate"]["pii_leaks"] == report.candidate.pii_leaks
