"""What a training loop reports back, in a module without torch: the gateway reads run records (the loop
controller, the recipe search's bookkeeping) in an image that has no torch."""

from __future__ import annotations

import msgspec


class EvalPoint(msgspec.Struct, frozen=True):
    step: int
    eval_loss: float
    # False when the point broke a limit (the forgetting check): never kept as the best adapter.
    within_limits: bool = True


class LoopResult(msgspec.Struct):
    steps_run: int
    best_step: int
    best_eval_loss: float
    stopped_early: bool
    # Why it stopped early: "patience" (no new best) or "forgetting" (past the general-loss limit).
    stop_reason: str | None
    resumed_from: int
    train_tokens: int
    train_seconds: float
    tokens_per_s: float
    history: list[EvalPoint]
