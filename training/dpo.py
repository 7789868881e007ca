"""Preference tuning: DPO (Rafailov et al., 2023) on the project's own training loop.

Not TRL's DPOTrainer, though trl 1.16 installs beside the pinned torch/transformers: it is built on
transformers' Trainer, which ``training.trainer`` declines for its status file, its single best adapter and its
one-checkpoint resume, and it brings ``datasets`` and ``multiprocess`` into the training image. The gate's
measure (the preference margin on held-out pairs) needs the same per-sequence log-probabilities as the loss,
so the loss itself is a few lines on top of them.

The reference model is the policy at step 0: the warm-start adapter, or the base model for a fresh adapter
(LoRA's B starts at zero). Its log-probabilities are computed once, before training, rather than under
peft's ``disable_adapter()`` at every step: disabling the adapter would measure a warm start against the base
model instead of against the adapter being improved, and one pass up front halves the forward passes per step.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import torch

from training import models
from training.config import TrainSpec
from training.evaluate import GateVerdict, Miss, ModelScores, eval_loss
from training.formatting import IGNORE, Encoded, collate, encode
from training.guard_eval import GuardedAnswers, GuardReport
from training.preferences import Pair, read_pairs, redact_pair
from training.prepare import Redact, general_examples
from training.status import Progress as Status
from training.trainer import LoopResult, load_adapter_weights, seed_everything, train_loop

if TYPE_CHECKING:
    from collections.abc import Callable

    from peft import PeftModel
    from rich.console import Console


class EncodedPair(msgspec.Struct, frozen=True):
    chosen: Encoded
    rejected: Encoded
    # Summed log-probability of each answer under the reference model.
    ref_chosen: float = 0.0
    ref_rejected: float = 0.0


class PreferenceScores(msgspec.Struct, frozen=True):
    """One model on held-out pairs, against the reference (the model training started from)."""

    name: str
    loss: float  # mean DPO loss; ln 2 = 0.6931 for the reference itself
    margin: float  # mean implicit reward of chosen minus rejected: beta * ((pi_c - ref_c) - (pi_r - ref_r))
    accuracy: float  # share of pairs whose margin is above zero
    logp_margin: float  # mean log p(chosen) - log p(rejected): comparable between any two models
    general_loss: float | None = None


class DpoResult(msgspec.Struct):
    adapter_dir: str
    run_record: str
    method: str
    gate: GateVerdict
    candidate: ModelScores
    baseline: ModelScores
    before: PreferenceScores
    after: PreferenceScores
    guards: GuardReport | None = None


class DpoRecord(msgspec.Struct):
    """``run.json`` of a DPO run: ``adapter_dir``/``gate``/``candidate``/``baseline`` as the loop reads them."""

    spec: dict
    adapter_dir: str
    pairs: dict[str, int]
    gate: GateVerdict
    candidate: ModelScores
    baseline: ModelScores
    before: PreferenceScores
    after: PreferenceScores
    base_general_loss: float | None
    loop: LoopResult
    durations_s: dict[str, float]
    # The start's and the candidate's greedy answers to the held-out prompts through the output guards.
    guards: GuardReport | None = None
    finished_at: float = msgspec.field(default_factory=time.time)


def dpo_loss(
    pi_chosen: torch.Tensor,
    pi_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), averaged; and the per-pair margins."""
    margins = beta * ((pi_chosen - ref_chosen) - (pi_rejected - ref_rejected))
    return -torch.nn.functional.logsigmoid(margins).mean(), margins


def sequence_logps(model: PeftModel, items: list[Encoded], pad_id: int) -> torch.Tensor:
    """Summed log-probability of each item's answer tokens (the labelled ones)."""
    where = next(model.parameters()).device
    batch = {k: v.to(where) for k, v in collate(items, pad_id).items()}
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    picked = torch.gather(logits.log_softmax(-1), 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def pair_logps(model: PeftModel, pairs: list[EncodedPair], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    both = sequence_logps(model, [p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id)
    return both[: len(pairs)], both[len(pairs) :]


def with_reference(model: PeftModel, pairs: list[EncodedPair], pad_id: int, batch_size: int) -> list[EncodedPair]:
    """``pairs`` with the current model's log-probabilities stored as the reference."""
    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            chosen, rejected = pair_logps(model, chunk, pad_id)
            out += [
                msgspec.structs.replace(p, ref_chosen=float(c), ref_rejected=float(r))
                for p, c, r in zip(chunk, chosen, rejected, strict=True)
            ]
    return out


def preference_scores(
    name: str, model: PeftModel, pairs: list[EncodedPair], beta: float, pad_id: int, batch_size: int
) -> PreferenceScores:
    losses, margins, logp_margins = [], [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            chosen, rejected = pair_logps(model, chunk, pad_id)
            loss, margin = dpo_loss(chosen, rejected, *_refs(chunk, chosen.device), beta)
            losses.append(float(loss) * len(chunk))
            margins += margin.tolist()
            logp_margins += (chosen - rejected).tolist()
    count = len(pairs)
    return PreferenceScores(
        name,
        round(sum(losses) / count, 5),
        round(sum(margins) / count, 5),
        round(sum(m > 0 for m in margins) / count, 4),
        round(sum(logp_margins) / count, 4),
    )


def run_dpo(
    spec: TrainSpec,
    *,
    console: Console,
    on_status: Callable[[Status], None] | None = None,
    redact: Redact | None = None,
) -> DpoResult:
    """Train an adapter on preference pairs; the gate asks for a higher held-out margin and no forgetting."""
    from transformers import AutoTokenizer

    from training.run import StatusPublisher

    publisher = StatusPublisher(spec.loop.steps, on_status)
    publisher.phase("preparing")
    clock, durations = time.perf_counter(), {}
    seed_everything(spec.loop.seed)
    pairs = [redact_pair(p, redact) for p in read_pairs(spec.data)] if redact else read_pairs(spec.data)
    random.Random(spec.loop.seed).shuffle(pairs)
    held = max(spec.data_config.min_eval, round(spec.data_config.eval_share * len(pairs)))
    if held >= len(pairs):
        raise ValueError(f"{len(pairs)} preference pairs: too few for {held} held out")
    tokenizer = AutoTokenizer.from_pretrained(spec.base)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    cap = spec.data_config.max_seq_length or spec.data_config.max_seq_cap

    def encoded(found: list[Pair]) -> list[EncodedPair]:
        return [
            EncodedPair(encode(p.example(p.chosen), tokenizer, cap), encode(p.example(p.rejected), tokenizer, cap))
            for p in found
        ]

    general = [encode(e, tokenizer, cap) for e in general_examples(spec.data_config)[1]]
    where = models.device()
    method, _ = models.resolve_method(spec.method, where)
    model = models.load(spec.base, method, spec.lora, where, where.type == "cuda", spec.start_adapter)
    batch = spec.loop.batch_size
    train_pairs = with_reference(model, encoded(pairs[held:]), pad_id, batch)
    eval_pairs = with_reference(model, encoded(pairs[:held]), pad_id, batch)
    durations["prepare"] = round(time.perf_counter() - clock, 3)

    clock = time.perf_counter()
    publisher.phase("baseline")
    with model.disable_adapter():
        base_general = eval_loss(model, general, pad_id, batch) if general else None
    start_general = eval_loss(model, general, pad_id, batch) if general else None
    before = preference_scores("start", model, eval_pairs, spec.dpo_beta, pad_id, batch)
    before = msgspec.structs.replace(before, general_loss=start_general)
    limit = (base_general or 0.0) * (1 + spec.gate.max_forgetting)
    # The held-out pairs' prompts, answered by the start (production, or the base model) before training.
    guarded = None
    if spec.guard_eval:
        guarded = GuardedAnswers(
            spec.guard_eval, [("eval", p.example(p.chosen)) for p in pairs[:held][: spec.guard_eval.prompts]]
        )
        guarded.baseline = guarded.answer(model, tokenizer)
    durations["baseline"] = round(time.perf_counter() - clock, 3)

    def batch_loss(items: list[EncodedPair]) -> tuple[torch.Tensor, int]:
        chosen, rejected = pair_logps(model, items, pad_id)
        loss, _ = dpo_loss(chosen, rejected, *_refs(items, chosen.device), spec.dpo_beta)
        return loss, sum(len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in items)

    def held_out_loss() -> float:
        return preference_scores("eval", model, eval_pairs, spec.dpo_beta, pad_id, batch).loss

    def within_limits() -> bool:
        return not general or eval_loss(model, general, pad_id, batch) <= limit

    clock = time.perf_counter()
    publisher.phase("training", eval_loss=before.loss)
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    loop = train_loop(
        model,
        models.optimizer(model, method, spec.loop.learning_rate),
        train_pairs,
        [],
        spec.loop,
        out,
        pad_id=pad_id,
        resume=spec.resume,
        report=publisher.step,
        batch_loss=batch_loss,
        evaluate=held_out_loss,
        within_limits=within_limits if general else None,
    )
    durations["train"] = round(time.perf_counter() - clock, 3)
    clock = time.perf_counter()

    publisher.phase("evaluating")
    adapter_dir = out / "adapter"
    load_adapter_weights(model, adapter_dir)
    after = preference_scores("candidate", model, eval_pairs, spec.dpo_beta, pad_id, batch)
    after = msgspec.structs.replace(after, general_loss=eval_loss(model, general, pad_id, batch) if general else None)
    verdict = preference_gate(before, after, base_general, spec.gate.max_forgetting)
    guards = None
    if guarded:
        guards = guarded.report("production" if spec.start_adapter else "base", guarded.answer(model, tokenizer))
    durations["evaluate"] = round(time.perf_counter() - clock, 3)
    publisher.phase("writing")
    record = DpoRecord(
        spec=msgspec.to_builtins(spec),
        adapter_dir=str(adapter_dir.resolve()),
        pairs={"train": len(train_pairs), "eval": len(eval_pairs)},
        gate=verdict,
        candidate=_as_model_scores(after),
        baseline=_as_model_scores(before),
        before=before,
        after=after,
        base_general_loss=base_general,
        loop=loop,
        durations_s=durations,
        guards=guards,
    )
    run_json = adapter_dir / "run.json"
    run_json.write_bytes(msgspec.json.format(msgspec.json.encode(record)))
    console.print(
        f"held-out preference margin {before.margin:+.4f} -> {after.margin:+.4f} "
        f"(log-prob margin {before.logp_margin:+.3f} -> {after.logp_margin:+.3f}, accuracy {after.accuracy:.0%}); "
        f"gate {'[green]passed[/]' if verdict.passed else '[red]failed[/]: ' + '; '.join(verdict.reasons)}"
    )
    publisher.succeeded(run_json)
    return DpoResult(
        str(adapter_dir),
        str(run_json),
        method,
        verdict,
        record.candidate,
        record.baseline,
        before,
        after,
        guards,
    )


def preference_gate(
    before: PreferenceScores, after: PreferenceScores, base_general: float | None, max_forgetting: float
) -> GateVerdict:
    """Pass when the held-out margin rose above the start's (its implicit reward is 0 by definition) and the
    general-set loss stayed within the forgetting limit."""
    reasons, misses = [], []
    if after.logp_margin <= before.logp_margin:
        reasons.append(f"preference margin did not rise: log-prob margin {after.logp_margin} <= {before.logp_margin}")
        misses.append(Miss("preference_margin", after.logp_margin, before.logp_margin, ceiling=False))
    if after.general_loss is not None and base_general is not None:
        limit = base_general * (1 + max_forgetting)
        if after.general_loss > limit:
            reasons.append(f"forgetting: general loss {after.general_loss:.4f} > {limit:.4f}")
            misses.append(Miss("forgetting", after.general_loss, limit))
    return GateVerdict(not reasons, tuple(reasons), tuple(misses))


def _refs(pairs: list[EncodedPair], where: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.tensor([p.ref_chosen for p in pairs], device=where),
        torch.tensor([p.ref_rejected for p in pairs], device=where),
    )


def _as_model_scores(scores: PreferenceScores) -> ModelScores:
    """The shape the loop and the registry show for every run: DPO loss as the loss, margins as slices."""
    return ModelScores(
        scores.name,
        scores.loss,
        round(math.exp(min(scores.loss, 50.0)), 4),
        scores.general_loss,
        None,
        {"preference_margin": scores.margin, "preference_logp_margin": scores.logp_margin},
    )
