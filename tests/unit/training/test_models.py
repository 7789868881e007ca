"""QLoRA on a CPU runs only where bitsandbytes' 4-bit kernels actually work, and falls back loudly otherwise."""

from __future__ import annotations

import pytest
import torch

from training import models


def test_cpu_4bit_probe_matches_a_real_nf4_layer() -> None:
    bnb = pytest.importorskip("bitsandbytes")
    reason = models.cpu_4bit_support()
    layer = bnb.nn.Linear4bit(8, 8, bias=False, compute_dtype=torch.float32, quant_type="nf4")
    try:
        layer.weight = bnb.nn.Params4bit(torch.randn(8, 8), requires_grad=False, quant_type="nf4")
        layer.to("cpu")(torch.randn(1, 8))
        works = True
    except Exception:
        works = False
    assert (reason is None) == works, reason


def test_qlora_falls_back_to_lora_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "cpu_4bit_support", lambda: "no CPU kernels")
    method, note = models.resolve_method("qlora", torch.device("cpu"))
    assert method == "lora" and "no CPU kernels" in note and "training LoRA" in note


def test_qlora_runs_on_cpu_when_the_kernels_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "cpu_4bit_support", lambda: None)
    assert models.resolve_method("qlora", torch.device("cpu"))[0] == "qlora"
    assert models.resolve_method("dora", torch.device("cpu")) == ("dora", "")
