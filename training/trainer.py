"""The training loop: a small hand loop rather than transformers' Trainer.

Why: the loop must report tokens/s and loss to a status file, keep exactly one adapter (the best by
validation loss) and resume from one checkpoint. Trainer would bring tqdm bars, accelerate state and a
checkpoint directory per save that we would have to prune; the loop itself is ~100 lines.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import torch

from training.config import TrainingSchedule
from training.evaluate import eval_loss
from training.formatting import Encoded, collate
from training.results import EvalPoint, LoopResult

if TYPE_CHECKING:
    from peft import PeftModel
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler

Report = Callable[["StepReport"], None]
# The loss of one micro-batch of training items and the tokens it covered (SFT: encoded examples; DPO: pairs).
BatchLoss = Callable[[list[Any]], "tuple[torch.Tensor, int]"]


class StepReport(msgspec.Struct):
    step: int
    total_steps: int
    loss: float
    tokens_per_s: float
    eval_loss: float | None = None
    best_eval_loss: float | None = None


class TrainerState(msgspec.Struct):
    """Where the loop stands: saved with every checkpoint, so a resumed run goes on from the same numbers."""

    step: int = 0
    best_eval_loss: float = math.inf
    best_step: int = 0
    # Evaluations in a row without a new best; ``TrainingSchedule.patience`` of them stop the run.
    bad_evals: int = 0
    history: list[EvalPoint] = msgspec.field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:
        pass


def batch_order(size: int, batch_size: int, index: int, seed: int) -> list[int]:
    """Example indices of micro-batch ``index``: a fresh permutation per epoch, the same after a resume."""
    per_epoch = max(1, size // batch_size)
    epoch, position = divmod(index, per_epoch)
    order = list(range(size))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return order[position * batch_size : (position + 1) * batch_size]


def train_loop(
    model: PeftModel,
    optimizer: Optimizer,
    train: list[Encoded],
    evaluation: list[Encoded],
    config: TrainingSchedule,
    out: Path,
    *,
    pad_id: int,
    resume: bool = True,
    report: Report | None = None,
    batch_loss: BatchLoss | None = None,
    evaluate: Callable[[], float] | None = None,
    within_limits: Callable[[], bool] | None = None,
) -> LoopResult:
    """Train ``model`` (a peft model); the best adapter ends in ``out/adapter``, the checkpoint is removed.

    ``batch_loss`` and ``evaluate`` default to supervised cross-entropy on ``train`` and ``evaluation``; DPO
    passes its own. ``within_limits`` (checked at every evaluation) vetoes a point as best; ``patience`` vetoed or
    worse points in a row stop the run.
    """
    from transformers import get_cosine_schedule_with_warmup

    seed_everything(config.seed)
    where = next(p for p in model.parameters() if p.requires_grad).device

    def supervised(items: list[Encoded]) -> tuple[torch.Tensor, int]:
        batch = {k: v.to(where) for k, v in collate(items, pad_id).items()}
        return model(**batch).loss, int(batch["attention_mask"].sum())

    batch_loss = batch_loss or supervised
    evaluate = evaluate or (lambda: eval_loss(model, evaluation, pad_id, config.batch_size))
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * config.steps), config.steps)
    checkpoint = out / "checkpoint"
    state = TrainerState()
    if resume and (checkpoint / "state.pt").exists():
        state = _load_checkpoint(checkpoint, model, optimizer, scheduler)
    resumed_from = state.step
    tokens, seconds, stop_reason = 0, 0.0, None
    model.train()
    for step in range(state.step + 1, config.steps + 1):
        started = time.perf_counter()
        total_loss = 0.0
        for micro in range(config.grad_accum):
            picked = batch_order(len(train), config.batch_size, (step - 1) * config.grad_accum + micro, config.seed)
            loss, covered = batch_loss([train[i] for i in picked])
            loss = loss / config.grad_accum
            loss.backward()
            total_loss += loss.item()
            tokens += covered
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - started
        state.step = step
        evaluated = None
        if step % config.eval_every == 0 or step == config.steps:
            evaluated = evaluate()
            allowed = within_limits() if within_limits is not None and config.stop_on_forgetting else True
            model.train()
            state.history.append(EvalPoint(step, evaluated, allowed))
            if allowed and evaluated < state.best_eval_loss - 1e-4:
                state.best_eval_loss, state.best_step, state.bad_evals = evaluated, step, 0
                _save_adapter(model, out / "adapter")
            else:
                # A point past the forgetting limit is never kept, but the run goes on: general loss often spikes
                # and comes back as the learning rate decays (an e2e run was over the limit at step 20 of 50 with
                # its best point still to come). ``patience`` such points in a row stop it.
                state.bad_evals += 1
                if not allowed and state.bad_evals >= config.patience:
                    stop_reason = "forgetting"
            _save_checkpoint(checkpoint, state, model, optimizer, scheduler)
        if report is not None:
            best = state.best_eval_loss if state.best_eval_loss < math.inf else None
            report(StepReport(step, config.steps, total_loss, tokens / seconds if seconds else 0.0, evaluated, best))
        if stop_reason is None and state.bad_evals >= config.patience:
            stop_reason = "patience"
        if stop_reason is not None:
            break
    if not (out / "adapter").exists():  # no point was within limits: keep the last, so it is scored and reported
        _save_adapter(model, out / "adapter")
    shutil.rmtree(checkpoint, ignore_errors=True)
    return LoopResult(
        steps_run=state.step,
        best_step=state.best_step,
        best_eval_loss=state.best_eval_loss,
        stopped_early=state.step < config.steps,
        stop_reason=stop_reason if state.step < config.steps else None,
        resumed_from=resumed_from,
        train_tokens=tokens,
        train_seconds=round(seconds, 3),
        tokens_per_s=round(tokens / seconds, 1) if seconds else 0.0,
        history=state.history,
    )


def load_adapter_weights(model: PeftModel, adapter_dir: Path) -> None:
    """Put the saved (best) adapter back into the live model, for the final evaluation."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(adapter_dir / "adapter_model.safetensors"))


def _save_adapter(model: PeftModel, target: Path) -> None:
    """Replace ``target`` whole: a crash leaves the previous best adapter, never half of a new one."""
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def _save_checkpoint(
    path: Path, state: TrainerState, model: PeftModel, optimizer: Optimizer, scheduler: LRScheduler
) -> None:
    from peft import get_peft_model_state_dict

    staging = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    torch.save(
        {
            # Builtins, not the Struct: the pickle then names no class of ours that a rename could break.
            "state": msgspec.to_builtins(state),
            "adapter": get_peft_model_state_dict(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {"python": random.getstate(), "torch": torch.get_rng_state()},
        },
        staging / "state.pt",
    )
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)


def _load_checkpoint(path: Path, model: PeftModel, optimizer: Optimizer, scheduler: LRScheduler) -> TrainerState:
    from peft import set_peft_model_state_dict

    saved = torch.load(path / "state.pt", weights_only=False)
    set_peft_model_state_dict(model, saved["adapter"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    random.setstate(saved["rng"]["python"])
    torch.set_rng_state(saved["rng"]["torch"])
    return msgspec.convert(saved["state"], TrainerState)
