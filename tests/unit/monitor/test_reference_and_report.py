"""Reference sets on disk, prompt files, and the Evidently HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from monitor.drift_report import write_html_report
from monitor.embedder import Embedder
from monitor.reference import ReferenceSet, build_reference, read_prompts


def test_a_reference_is_built_deduplicated_and_survives_a_round_trip(embedder: Embedder, tmp_path: Path) -> None:
    prompts = ["How do I get a refund?", "How do I get a refund?", "  ", "Cancel my plan please"]
    built = build_reference(embedder, prompts, alias="support", version="2", source="train.jsonl")
    assert built.embeddings.shape == (2, 384) and built.meta.count == 2
    loaded = ReferenceSet.load(built.save(tmp_path / "support@2"))
    assert loaded.meta == built.meta
    np.testing.assert_array_equal(loaded.embeddings, built.embeddings)


def test_prompt_files_are_text_or_jsonl(tmp_path: Path) -> None:
    text = tmp_path / "prompts.txt"
    text.write_text("first\n\nsecond\n")
    assert read_prompts(text) == ["first", "second"]
    records = [
        {"prompt": "p"},
        {"text": "t"},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [{"text": "u"}]}]},
    ]
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("\n".join(json.dumps(record) for record in records))
    assert read_prompts(jsonl) == ["p", "t", "u"]


def test_the_html_report_is_written(corpus, tmp_path: Path) -> None:
    path = write_html_report(corpus["programming"][:80], corpus["support_reference"][:120], tmp_path / "r.html")
    html = path.read_text()
    assert path.stat().st_size > 10_000 and "Drift in embeddings" in html
