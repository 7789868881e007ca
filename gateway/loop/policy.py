"""What the loop controller may do for an alias, and the pure decision it takes when a drift alert arrives.

The decision is a function of the policy, the alias's earlier loop runs and the samples available, so the
same inputs always give the same verdict and the policy tests need no gateway.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from training.config import Method, Objective, Recipe

Approval = Literal["auto", "manual"]
StartFrom = Literal["production", "base"]
DAY_S = 86_400.0
# Tried after the policy's own recipe fails the gate, picked by what it missed (``training.search.next_recipe``):
# after forgetting the general set, the gentlest (more general-data replay, fewer or smaller steps, a smaller
# rank); after forgetting the old topic, the most replay of the registered data, with more steps so the new
# samples are seen as often (measured on a second drift: a gentler recipe kept the old topic but learned too
# little of the new); after learning too little (the new slice's loss or answers), the strongest.
FALLBACK_RECIPES = (
    Recipe(learning_rate=1e-3, steps=100, rank=16, general_share=0.3, new_share=0.33),
    Recipe(learning_rate=5e-4, steps=40, rank=16, general_share=0.3),
    Recipe(learning_rate=3e-4, steps=60, rank=8, general_share=0.5),
    Recipe(learning_rate=1e-3, steps=100, rank=16, general_share=0.3),
)


class LoopTrainSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The training job a loop run starts: small on purpose, it retrains from the production adapter's data."""

    method: Method = "lora"
    steps: int = 60
    batch_size: int = 4
    learning_rate: float = 1e-3
    eval_every: int = 10
    rank: int = 16
    # Share of general data mixed into the train split, against forgetting (0.1 let a warm start from a
    # support-desk adapter pass the forgetting limit after 20 of 50 steps, so its kept point learned too little).
    general_share: float = 0.3
    # Share of the new samples (and of the registered dataset) held out as the "new" and "old" eval sets.
    holdout_share: float = 0.2
    # The registered dataset (not held out) is replayed in train so the new samples make this share of it.
    new_share: float = 0.5
    # Gate: on held-out new samples the candidate's loss must be at most production's x this ...
    new_loss_ratio: float = 0.9
    # ... and on held-out samples of the registered dataset at most production's x this.
    old_loss_ratio: float = 1.1
    # Both plus this many nats per token (losses near zero make a bare ratio noise).
    loss_slack: float = 0.05
    # Gate on what users read: at least this share of the held-out new prompts must get a greedy answer
    # closer to the correction (ROUGE-L) than production's answer (the loss can fall 70% while a third of
    # the answers keep the old style) ...
    min_new_answer_wins: float = 0.75
    # ... and at least this share of the held-out old prompts an answer about as close to the registered
    # answer as production's (within 0.1 ROUGE-L). 0 turns either check off.
    min_old_answer_holds: float = 0.75
    # General-set loss may rise by at most this share over the base model's (the training gate's forgetting
    # check; looser than a hand-run's 0.1, since the old-topic slice already guards what the alias serves).
    max_forgetting: float = 0.2
    # None: the base model directory under <home>/models named after the route's upstream model.
    base_path: str | None = None
    # Continue training the production adapter (warm start: its rank is kept, what it learned is the
    # starting point, and the gate's "old" slice measures forgetting against it) or train a fresh adapter
    # from the base model.
    start_from: StartFrom = "production"
    # sft: learn the corrected answers; dpo: learn to prefer them (pairs from corrections and votes; DPO
    # always starts from the production adapter it refines).
    objective: Objective = "sft"
    dpo_beta: float = 0.1
    # Recipe search: the recipe above (learning_rate, steps, rank, general_share, new_share) first, then these, until
    # one passes the gate or the budget is spent; the alias's last search puts its closest recipe first.
    fallback_recipes: tuple[Recipe, ...] = FALLBACK_RECIPES
    max_trials: int = 3
    max_search_s: float = 1800.0

    def recipes(self) -> list[Recipe]:
        first = Recipe(self.learning_rate, self.steps, self.rank, self.general_share, self.new_share)
        return [first, *(r for r in self.fallback_recipes if r != first)]


class CanaryPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How long a candidate serves a share of traffic, and the sequential test that ends its canary.

    Each online signal is a Bernoulli stream tested with Wald's SPRT (``gateway/loop/sequential.py``): errors,
    guard blocks and latency above production's p95 must show the candidate no worse than production (or
    worse by the signal's effect size: roll back); ratings, when both versions have them, must show users
    prefer it (or prefer production: roll back).
    """

    share: float = 0.2
    # No verdict before the canary served this many requests and ran this long, whatever the evidence says.
    min_requests: int = 50
    min_s: float = 0.0
    # With no verdict by then: `on_timeout` (rollback keeps production, the safe default).
    max_s: float = 3600.0
    on_timeout: Literal["rollback", "promote"] = "rollback"
    # Wald's error probabilities: alpha = promoting a candidate that is worse by the effect size, beta =
    # rolling back one that is not.
    alpha: float = 0.05
    beta: float = 0.1
    # Effect sizes (absolute shares): how much worse a rate must be to count as worse.
    error_effect: float = 0.05
    block_effect: float = 0.05
    # Share of canary requests slower than production's p95 (plus 50 ms), above production's own share.
    latency_effect: float = 0.2
    # Ratings, when both have `min_ratings`: among paired votes that disagree, the candidate wins 1/2 + this
    # share (better) or 1/2 - this share (worse).
    rating_effect: float = 0.1
    min_ratings: int = 5


class GuardGatePolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The gate's guard check: the candidate's and the baseline's held-out answers through the output guards."""

    enabled: bool = True
    # Held-out prompts (shared between eval-new and eval-old), answered greedily in this many tokens.
    prompts: int = 16
    max_new_tokens: int = 48
    # Reject when the candidate's share of answers with PII (or toxic ones) exceeds the baseline's by more.
    max_pii_rate_increase: float = 0.1
    max_toxicity_rate_increase: float = 0.1


class LoopPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    approval: Approval = "auto"
    # After a run started for the alias, alerts are skipped for this long.
    cooldown_s: float = 3600.0
    # Corrected or up-voted answers (plus teacher-labeled drifted prompts) needed to start a job.
    min_new_samples: int = 20
    max_jobs_per_day: int = 4
    train: LoopTrainSettings = msgspec.field(default_factory=LoopTrainSettings)
    canary: CanaryPolicy = msgspec.field(default_factory=CanaryPolicy)
    guard_gate: GuardGatePolicy = msgspec.field(default_factory=GuardGatePolicy)


class TeacherSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An OpenAI-compatible endpoint that answers drifted prompts, so they become training samples."""

    url: str  # base URL, e.g. https://api.example.com/v1
    model: str
    # Environment variable holding the teacher's API key (never the key itself in the config).
    api_key_env: str | None = None
    max_prompts: int = 200
    max_tokens: int = 256
    timeout_s: float = 60.0


class LoopSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The closed loop: on with `driftgate up`; aliases without their own policy use `default`."""

    default: LoopPolicy = msgspec.field(default_factory=LoopPolicy)
    aliases: dict[str, LoopPolicy] = msgspec.field(default_factory=dict)
    teacher: TeacherSettings | None = None
    # Alert names that may start a run (Prometheus' rule and the drift monitor both send EmbeddingDrift).
    alertnames: tuple[str, ...] = ("EmbeddingDrift",)
    # How often the worker driving runs looks at them.
    tick_s: float = 2.0

    def policy(self, alias: str) -> LoopPolicy:
        return self.aliases.get(alias, self.default)


class PastRun(msgspec.Struct, frozen=True):
    """What a decision needs to know of an earlier run of the same alias."""

    id: str
    created: float
    accepted: bool
    active: bool
    fingerprint: str


class RunDecision(msgspec.Struct, frozen=True):
    """Whether a drift alert starts a loop run, and the reason the run's timeline shows."""

    accepted: bool
    reason: str


def decide(policy: LoopPolicy, fingerprint: str, history: list[PastRun], new_samples: int, now: float) -> RunDecision:
    """Whether a firing alert for an alias starts a run, and why (every branch names its reason)."""
    for run in history:
        if run.active:
            same = " (the same alert)" if run.fingerprint == fingerprint else ""
            return RunDecision(False, f"duplicate: run {run.id} is still in progress{same}")
    accepted = sorted((run for run in history if run.accepted), key=lambda run: run.created)
    if accepted and now - accepted[-1].created < policy.cooldown_s:
        left = policy.cooldown_s - (now - accepted[-1].created)
        return RunDecision(
            False, f"cooldown: run {accepted[-1].id} started {now - accepted[-1].created:.0f} s ago ({left:.0f} s left)"
        )
    today = [run for run in accepted if now - run.created < DAY_S]
    if len(today) >= policy.max_jobs_per_day:
        return RunDecision(False, f"daily limit: {len(today)} runs in the last 24 h (max {policy.max_jobs_per_day})")
    if new_samples < policy.min_new_samples:
        return RunDecision(False, f"too few new samples: {new_samples} (the policy needs {policy.min_new_samples})")
    if policy.approval == "manual":
        return RunDecision(True, f"{new_samples} new samples; waiting for approval (manual mode)")
    return RunDecision(True, f"{new_samples} new samples; starting (auto mode)")
