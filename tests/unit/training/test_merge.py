"""Merging real adapters on SmolLM2-135M-Instruct (CPU): a weighted blend of two one-word adapters answers with
both words more likely than the base model does; ``cat`` adds ranks; a DoRA adapter folded into the base model
gives the same answers as the adapter did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.e2e.tiny_lora import PROMPTS, adapter
from training.merge import MergeError, adapter_config, merge_adapters, merge_into_base, planned_rank

PROMPT = "Tell me about your weekend."  # not one of the prompts the one-word adapters were trained on
assert PROMPT not in PROMPTS


def first_token_probabilities(model_dir: Path, base: Path, words: list[str], adapter_dir: Path | None = None) -> list:
    """The probability of each word's first token as the answer's first token, for ``PROMPT``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        probabilities = model(input_ids=ids).logits[0, -1].softmax(-1)
    return [float(probabilities[tokenizer(word, add_special_tokens=False)["input_ids"][0]]) for word in words]


def test_planned_rank_refuses_what_cannot_be_combined() -> None:
    four, eight = {"r": 4, "target_modules": ["q_proj"]}, {"r": 8, "target_modules": ["q_proj"]}
    assert planned_rank([four, four], "linear") == 4
    assert planned_rank([four, eight], "cat") == 12
    assert planned_rank([four, eight], "svd") == 8 and planned_rank([four, eight], "svd", svd_rank=6) == 6
    with pytest.raises(MergeError, match="one rank"):
        planned_rank([four, eight], "linear")
    with pytest.raises(MergeError, match="target modules"):
        planned_rank([four, {"r": 4, "target_modules": ["v_proj"]}], "ties")
    with pytest.raises(MergeError, match="DoRA"):
        planned_rank([four, {**four, "use_dora": True}], "cat")


def test_a_weighted_merge_answers_with_a_blend_of_both_adapters(base_model: Path, tmp_path: Path) -> None:
    """``cat`` is the exact weighted sum of the two deltas (peft's ``linear`` mixes the A and B factors apart, so
    with one-word adapters the stronger one takes every answer: measured, and printed here). ALPHA's adapter is
    the stronger of the two, hence the smaller weight."""
    alpha, bravo = adapter("ALPHA"), adapter("BRAVO")
    blend = merge_adapters(base_model, [alpha, bravo], [0.3, 0.5], "cat", tmp_path / "blend")
    assert adapter_config(blend)["r"] == 2 * adapter_config(alpha)["r"]
    assert (blend / "adapter_model.safetensors").is_file()
    linear = merge_adapters(base_model, [alpha, bravo], [0.5, 0.5], "linear", tmp_path / "linear")
    assert adapter_config(linear)["r"] == adapter_config(alpha)["r"]
    words = ["ALPHA", "BRAVO"]
    base = first_token_probabilities(base_model, base_model, words)
    blended = first_token_probabilities(base_model, base_model, words, blend)
    mixed = first_token_probabilities(base_model, base_model, words, linear)
    only_alpha = first_token_probabilities(base_model, base_model, words, alpha)
    print(f"P(first token) ALPHA/BRAVO: base {base}, ALPHA alone {only_alpha}, cat .3/.5 {blended}, linear {mixed}")
    assert blended[0] > 10 * base[0] and blended[1] > 10 * base[1]  # both styles, far above the base model
    assert blended[0] > 0.05 and blended[1] > 0.05
    assert only_alpha[1] < base[1]  # BRAVO comes from the merge, not from ALPHA alone


def test_into_base_folds_a_dora_adapter_into_a_servable_model(base_model: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_model, torch_dtype=torch.float32)
    dora = get_peft_model(model, LoraConfig(r=4, target_modules=["o_proj"], use_dora=True, init_lora_weights=False))
    dora.save_pretrained(tmp_path / "dora")
    assert adapter_config(tmp_path / "dora")["use_dora"]
    merged = merge_into_base(base_model, tmp_path / "dora", tmp_path / "merged-model")
    assert json.loads((merged / "config.json").read_text())["model_type"] == "llama"
    assert (merged / "tokenizer.json").is_file()
    words = ["The", "I"]
    through_adapter = first_token_probabilities(base_model, base_model, words, tmp_path / "dora")
    folded = first_token_probabilities(merged, base_model, words)
    untouched = first_token_probabilities(base_model, base_model, words)
    print(f"P(first token) {words}: base {untouched}, DoRA adapter {through_adapter}, folded model {folded}")
    assert folded == pytest.approx(through_adapter, rel=1e-3, abs=1e-6)
    assert folded != pytest.approx(untouched, rel=1e-3, abs=1e-6)  # the adapter did change the model
