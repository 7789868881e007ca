"""Offline evaluation of a candidate adapter, and the gate that decides whether it may become a candidate.

ROUGE-L is implemented here (LCS over lower-cased word tokens, F1), not taken from ``rouge-score``: it is
twenty lines and saves a dependency (plus its nltk) in the training image.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import msgspec

from training.config import Gate
from training.data import Example
from training.formatting import IGNORE, Encoded, collate

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

_TOKEN = re.compile(r"\w+")


class TaskScore(msgspec.Struct, frozen=True):
    count: int
    exact_match: float
    rouge_l: float


class ModelScores(msgspec.Struct):
    """One model's numbers: the base model, the production adapter or the candidate."""

    name: str
    eval_loss: float
    perplexity: float
    general_loss: float | None = None
    task: TaskScore | None = None
    # Loss on each named eval set (``TrainSpec.eval_sets``).
    slices: dict[str, float] = msgspec.field(default_factory=dict)


class Miss(msgspec.Struct, frozen=True):
    """One gate limit a candidate missed, as numbers: what a recipe search ranks trials by and reports."""

    check: str  # "validation", "forgetting", a slice name, "rouge_l", "preference_margin"
    value: float
    limit: float
    # True when the value must stay at or below the limit (losses); False for floors (ROUGE-L, margins).
    ceiling: bool = True

    @property
    def by(self) -> float:
        """How far past the limit, as a share of the limit (0.03 = 3% over a ceiling or under a floor)."""
        gap = self.value - self.limit if self.ceiling else self.limit - self.value
        return gap / max(abs(self.limit), 1e-9)


class GateVerdict(msgspec.Struct, frozen=True):
    passed: bool
    reasons: tuple[str, ...]
    misses: tuple[Miss, ...] = ()
    # Every limit the candidate was held to (check -> value), met or not: the timeline shows both sides.
    limits: dict[str, float] = msgspec.field(default_factory=dict)


def eval_loss(model: PeftModel, examples: list[Encoded], pad_id: int, batch_size: int = 4) -> float:
    """Mean cross-entropy per trained (assistant) token, weighted by tokens rather than by batch."""
    import torch

    model.eval()
    where = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = {k: v.to(where) for k, v in collate(examples[start : start + batch_size], pad_id).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            losses = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().transpose(1, 2), labels, ignore_index=IGNORE, reduction="sum"
            )
            total += losses.item()
            count += int((labels != IGNORE).sum())
    return total / count


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def rouge_l(candidate: str, reference: str) -> float:
    a, b = _TOKEN.findall(candidate.lower()), _TOKEN.findall(reference.lower())
    if not a or not b:
        return float(a == b)
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def exact_match(candidate: str, reference: str) -> bool:
    return _TOKEN.findall(candidate.lower()) == _TOKEN.findall(reference.lower())


def generate(model: PeftModel, tokenizer: PreTrainedTokenizerBase, example: Example, max_new_tokens: int) -> str:
    """Greedy answer to everything but the example's last (assistant) message."""
    import torch

    messages = [{"role": m.role, "content": m.content} for m in example.messages[:-1]]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    where = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        out = model.generate(
            **{k: v.to(where) for k, v in ids.items()},
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def task_score(
    model: PeftModel, tokenizer: PreTrainedTokenizerBase, examples: list[Example], limit: int
) -> TaskScore | None:
    """Exact match and ROUGE-L of greedy answers against the records' references; None without references."""
    scored = [e for e in examples if e.reference is not None][:limit]
    if not scored:
        return None
    matches, rouge = 0, 0.0
    for example in scored:
        budget = len(tokenizer(example.reference)["input_ids"]) + 8
        answer = generate(model, tokenizer, example, budget)
        matches += exact_match(answer, example.reference)
        rouge += rouge_l(answer, example.reference)
    return TaskScore(len(scored), round(matches / len(scored), 4), round(rouge / len(scored), 4))


def check_gate(gate: Gate, candidate: ModelScores, baseline: ModelScores, base: ModelScores) -> GateVerdict:
    """Pass only when every configured margin holds; every failed margin is one reason."""
    reasons, misses, limits = [], [], {}
    ceiling = baseline.eval_loss * (1 - gate.min_loss_improvement)
    limits["validation"] = ceiling
    if candidate.eval_loss > ceiling:
        reasons.append(
            f"validation loss {candidate.eval_loss:.4f} > {ceiling:.4f} "
            f"({baseline.name} {baseline.eval_loss:.4f} less {gate.min_loss_improvement:.0%})"
        )
        misses.append(Miss("validation", candidate.eval_loss, ceiling))
    if candidate.general_loss is not None and base.general_loss is not None:
        limit = limits["forgetting"] = base.general_loss * (1 + gate.max_forgetting)
        if candidate.general_loss > limit:
            reasons.append(
                f"forgetting: general loss {candidate.general_loss:.4f} > {limit:.4f} "
                f"(base {base.general_loss:.4f} plus {gate.max_forgetting:.0%})"
            )
            misses.append(Miss("forgetting", candidate.general_loss, limit))
    for name, ratio in sorted(gate.slices.items()):
        if name not in candidate.slices or name not in baseline.slices:
            reasons.append(f"no eval set named {name!r} was scored")
            continue
        limit = limits[name] = baseline.slices[name] * ratio + gate.slice_slack
        if candidate.slices[name] > limit:
            slack = f" + {gate.slice_slack}" if gate.slice_slack else ""
            reasons.append(
                f"{name}: loss {candidate.slices[name]:.4f} > {limit:.4f} "
                f"({baseline.name} {baseline.slices[name]:.4f} x {ratio}{slack})"
            )
            misses.append(Miss(name, candidate.slices[name], limit))
    if candidate.task is not None and baseline.task is not None:
        floor = limits["rouge_l"] = baseline.task.rouge_l - gate.max_rouge_drop
        if candidate.task.rouge_l < floor:
            reasons.append(f"ROUGE-L {candidate.task.rouge_l:.4f} < {floor:.4f} ({baseline.name} less margin)")
            misses.append(Miss("rouge_l", candidate.task.rouge_l, floor, ceiling=False))
    return GateVerdict(not reasons, tuple(reasons), tuple(misses), limits)
