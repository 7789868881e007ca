"""Combining LoRA adapters (peft's ``add_weighted_adapter``) and merging one into its base model's weights.

Two uses: a merged adapter blends what its sources learned (two styles, two topics) into one version that
vLLM serves like any other; ``into_base`` folds an adapter into the base weights and saves a whole model, the
way out for DoRA adapters, which vLLM cannot serve as adapters. :func:`planned_rank` says what rank a merge
will have from the sources' configs alone, so a merge over the serving limit (``cat`` adds ranks) is refused
before the base model is loaded.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

Method = Literal["linear", "cat", "svd", "ties", "dare_linear", "dare_ties"]
# Methods that add the sources' deltas in their own rank: every source must share one rank.
SAME_RANK: frozenset[str] = frozenset({"linear", "ties", "dare_linear", "dare_ties"})


class MergeError(ValueError):
    """The sources cannot be combined this way (the message says why and what would work)."""


def adapter_config(directory: str | Path) -> dict:
    return json.loads((Path(directory) / "adapter_config.json").read_text())


def planned_rank(configs: Sequence[dict], method: Method, svd_rank: int | None = None) -> int:
    """The merged adapter's LoRA rank: the shared rank (linear, ties, dare), the sum (cat), or the SVD rank."""
    ranks = [int(config["r"]) for config in configs]
    if any(config.get("use_dora") for config in configs):
        raise MergeError("DoRA adapters cannot be combined; merge each into its base model instead (into_base).")
    if method in SAME_RANK:
        if len(set(ranks)) != 1:
            raise MergeError(f"`{method}` needs sources of one rank, these have {ranks}: use `cat` or `svd`.")
        targets = {frozenset(config.get("target_modules") or ()) for config in configs}
        if len(targets) != 1:
            raise MergeError(f"`{method}` needs sources with the same target modules: use `cat` or `svd`.")
        return ranks[0]
    if method == "cat":
        return sum(ranks)
    return svd_rank or max(ranks)


def merge_adapters(
    base_model: str | Path,
    sources: Sequence[str | Path],
    weights: Sequence[float],
    method: Method,
    out: Path,
    *,
    density: float | None = None,
    svd_rank: int | None = None,
) -> Path:
    """Write the combination of ``sources`` (peft adapter directories on ``base_model``) to ``out``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if len(sources) != len(weights):
        raise MergeError(f"{len(sources)} sources but {len(weights)} weights.")
    planned_rank([adapter_config(source) for source in sources], method, svd_rank)
    if method.startswith(("ties", "dare")) and density is None:
        density = 0.5  # peft needs one for these methods; half is its documentation's example
    model = AutoModelForCausalLM.from_pretrained(str(base_model), torch_dtype=torch.float32)
    names = [f"source{index}" for index in range(len(sources))]
    peft_model = PeftModel.from_pretrained(model, str(sources[0]), adapter_name=names[0])
    for name, source in zip(names[1:], sources[1:], strict=True):
        peft_model.load_adapter(str(source), adapter_name=name)
    peft_model.add_weighted_adapter(
        names,
        list(weights),
        adapter_name="merged",
        combination_type=method,
        svd_rank=svd_rank,
        density=density,
    )
    for name in names:
        peft_model.delete_adapter(name)
    partial = out.with_name(out.name + ".partial")
    peft_model.save_pretrained(str(partial), selected_adapters=["merged"])
    # save_pretrained puts a non-default adapter in a subfolder named after it.
    saved = partial / "merged" if (partial / "merged" / "adapter_config.json").is_file() else partial
    saved.rename(out)
    shutil.rmtree(partial, ignore_errors=True)  # what save_pretrained left beside the subfolder (a README)
    return out


def merge_into_base(base_model: str | Path, adapter: str | Path, out: Path) -> Path:
    """Fold ``adapter`` (LoRA or DoRA) into ``base_model``'s weights and save the whole model, tokenizer included."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(base_model), torch_dtype="auto")
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    partial = out.with_name(out.name + ".partial")
    merged.save_pretrained(str(partial))
    AutoTokenizer.from_pretrained(str(base_model)).save_pretrained(str(partial))
    partial.rename(out)
    return out
