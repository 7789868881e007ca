"""Each data-preparation check, fed the bad input it exists for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.config import DataSettings
from training.data import BadData, Example, Message, read_jsonl
from training.dedup import jaccard, normalise, shingles
from training.evaluate import exact_match, rouge_l
from training.formatting import IGNORE, LengthStats, choose_max_seq_length
from training.prepare import mix_count, prepare, remove_leaks


def topic_records(count: int) -> list[dict]:
    words = "apple river cloud engine violin garden marble falcon copper lantern".split()
    return [
        {
            "prompt": f"Question {i}: tell me about the {words[i % 10]} number {i} and {words[(i * 7) % 10]}",
            "completion": f"Answer {i} about {words[i % 10]} {i}",
        }
        for i in range(count)
    ]


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_records_are_reported_with_line_numbers(tmp_path: Path) -> None:
    good = json.dumps({"prompt": "hi", "completion": "hello"})
    path = write(
        tmp_path,
        [
            good,
            "{not json",
            json.dumps({"prompt": "hi"}),
            json.dumps({"prompt": "hi", "completion": "   "}),
            json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]}),
            json.dumps({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]}),
            json.dumps({"text": "no shape"}),
        ],
    )
    examples, problems = read_jsonl(path)
    assert [e.line for e in examples] == [1]
    assert [(p.line, p.kind) for p in problems] == [
        (2, "malformed_json"),
        (3, "missing_field"),
        (4, "empty_answer"),
        (5, "wrong_role"),
        (6, "wrong_role"),
        (7, "missing_field"),
    ]


def test_strict_aborts_on_the_first_bad_record(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in topic_records(10)] + ["{broken"]
    path = write(tmp_path, lines)
    with pytest.raises(BadData, match=":11: malformed_json"):
        prepare(path, DataSettings(strict=True))
    lenient = prepare(path, DataSettings(strict=False))
    assert [p.line for p in lenient.report.problems] == [11]
    assert lenient.report.train + lenient.report.eval == 10


def test_exact_and_near_duplicates_are_removed_and_reported(tmp_path: Path) -> None:
    records = topic_records(10)
    exact = dict(records[0], prompt=records[0]["prompt"].upper() + "  ")  # same after normalisation
    near = dict(records[1], completion=records[1]["completion"] + " please")
    path = write(tmp_path, [json.dumps(r) for r in [*records, exact, near]])
    report = prepare(path, DataSettings()).report
    assert [(d.line, d.of_line, d.kind) for d in report.duplicates] == [(11, 1, "exact"), (12, 2, "near")]
    assert 0.8 <= report.duplicates[1].similarity < 1
    assert report.train + report.eval == 10


def test_near_duplicate_measure_is_word_trigram_jaccard() -> None:
    assert normalise("Héllo,   WORLD!") == "hello world"
    a, b = shingles("the quick brown fox jumps"), shingles("the quick brown fox leaps")
    assert jaccard(a, b) == pytest.approx(2 / 4)


def test_leakage_check_removes_train_records_with_an_eval_prompt() -> None:
    def example(line: int, prompt: str, answer: str) -> Example:
        return Example((Message("user", prompt), Message("assistant", answer)), line)

    evaluation = [example(1, "How do I reset my router password quickly?", "Hold reset.")]
    train = [
        example(2, "How do I reset my router password quickly", "A different answer entirely."),
        example(3, "What is the weather on Mars like today?", "Cold."),
    ]
    kept, leaks = remove_leaks(train, evaluation, threshold=0.8)
    assert [e.line for e in kept] == [3]
    assert [(leak.line, leak.of_line, leak.kind) for leak in leaks] == [(2, 1, "leak")]


def test_prepared_splits_never_leak(tmp_path: Path) -> None:
    records = topic_records(30)
    # Same prompts, different answers: dedup on the whole record keeps them, the leakage check must not.
    records += [dict(r, completion=f"Another answer {i}") for i, r in enumerate(records[:30])]
    data = prepare(write(tmp_path, [json.dumps(r) for r in records]), DataSettings(eval_share=0.2))
    eval_prompts = {e.prompt for e in data.eval}
    assert not [e for e in data.train if e.prompt in eval_prompts]
    assert data.report.leaks


def test_pii_redaction_is_called_on_every_message_and_reference(tmp_path: Path) -> None:
    records = topic_records(10)
    records[3] = {"prompt": "mail me at ann@example.com", "completion": "ok ann@example.com", "reference": "x"}
    seen: list[str] = []

    def redact(text: str) -> str:
        seen.append(text)
        return text.replace("ann@example.com", "<EMAIL_1>")

    data = prepare(write(tmp_path, [json.dumps(r) for r in records]), DataSettings(), redact=redact)
    assert len(seen) == 10 * 2 + 1
    assert data.report.redacted == 1
    texts = [e.text for e in data.train + data.eval]
    assert not any("ann@example.com" in t for t in texts)
    assert any("<EMAIL_1>" in t for t in texts)


def test_cli_redactor_uses_the_guards() -> None:
    from training.cli import guards_redactor

    redacted = guards_redactor()("write to bob@example.org or call +1 415 555 0100")
    assert "bob@example.org" not in redacted and "<EMAIL_1>" in redacted
    assert "555 0100" not in redacted


def test_general_data_is_mixed_at_the_requested_share(tmp_path: Path) -> None:
    data = prepare(write(tmp_path, [json.dumps(r) for r in topic_records(40)]), DataSettings(general_share=0.2))
    general = [e for e in data.train if e.source == "general"]
    assert len(general) == data.report.general_mixed == mix_count(36, 0.2, 48) == 9
    held_out = {e.prompt for e in data.general_eval}
    assert held_out and not held_out & {e.prompt for e in general}


def test_assistant_tokens_only_carry_labels(base_model: Path) -> None:
    from transformers import AutoTokenizer

    from training.formatting import encode

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    example = Example((Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "HELLO ARR!")), 1)
    encoded = encode(example, tokenizer)
    pairs = zip(encoded.input_ids, encoded.labels, strict=True)
    trained = tokenizer.decode([token for token, label in pairs if label != IGNORE])
    assert trained.startswith("HELLO ARR!<|im_end|>")
    assert "Hi" not in trained and "Be brief" not in trained
    assert encoded.labels[0] == IGNORE


def test_max_seq_length_is_p99_rounded_up_and_capped() -> None:
    stats = LengthStats.of(list(range(1, 101)) + [1000])
    assert (stats.min, stats.p50, stats.max) == (1, 51, 1000)
    assert choose_max_seq_length(stats, cap=2048) == 128
    assert choose_max_seq_length(stats, cap=96) == 96


def test_task_scores() -> None:
    assert exact_match("Paris.", "paris")
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert rouge_l("the cat sat", "the cat sat on the mat") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert rouge_l("dogs bark", "the cat sat") == 0.0


def test_named_eval_sets_are_read_redacted_and_kept_out_of_train(tmp_path: Path) -> None:
    records = topic_records(30)
    (tmp_path / "new.jsonl").write_text(
        "\n".join(json.dumps(r) for r in records[:3]) + "\n{broken\n" + json.dumps({"prompt": "x", "completion": ""})
    )
    data = prepare(
        write(tmp_path, [json.dumps(r) for r in records]),
        DataSettings(eval_share=0.1),
        redact=str.upper,
        eval_sets={"new": str(tmp_path / "new.jsonl")},
    )
    held_out = {e.prompt for e in data.eval_sets["new"]}
    assert len(held_out) == 3 and all(p == p.upper() for p in held_out)
    assert not [e for e in data.train if e.prompt in held_out], "an eval-set prompt leaked into train"
    assert {(p.source, p.line, p.kind) for p in data.report.problems} == {
        ("new", 4, "malformed_json"),
        ("new", 5, "empty_answer"),
    }


def test_gate_slices_hold_the_candidate_to_a_ratio_of_the_baseline_per_eval_set() -> None:
    from training.config import Gate
    from training.evaluate import ModelScores, check_gate

    gate = Gate(max_forgetting=1.0, slices={"new": 0.9, "old": 1.1})
    production = ModelScores("production", 2.0, 7.4, slices={"new": 3.0, "old": 1.0})
    good = ModelScores("candidate", 1.9, 6.7, slices={"new": 2.6, "old": 1.05})
    passed = check_gate(gate, good, production, production)
    # Every limit is recorded, met or not, so the timeline shows each loss beside what it was held to.
    assert passed.passed and passed.limits == pytest.approx({"validation": 2.0, "new": 2.7, "old": 1.1}), passed.limits
    no_win = ModelScores("candidate", 1.9, 6.7, slices={"new": 2.8, "old": 1.0})
    forgot = ModelScores("candidate", 1.9, 6.7, slices={"new": 2.0, "old": 1.2})
    for candidate, what in ((no_win, "new: loss 2.8000 > 2.7000"), (forgot, "old: loss 1.2000 > 1.1000")):
        verdict = check_gate(gate, candidate, production, production)
        assert not verdict.passed and any(what in reason for reason in verdict.reasons), verdict
    unscored = check_gate(gate, ModelScores("candidate", 1.9, 6.7), production, production)
    assert not unscored.passed and "no eval set named 'new'" in unscored.reasons[0]
