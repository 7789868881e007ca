"""What a training run is asked to do: the job spec, written once as ``job.json`` and read by the child.

Every field has a default that trains a small adapter safely on CPU, so a spec needs only ``data``,
``base`` and ``out``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Method = Literal["lora", "dora", "qlora"]
# What the adapter is trained to do: imitate answers (supervised), or prefer chosen over rejected answers (DPO).
Objective = Literal["sft", "dpo"]


class DataSettings(msgspec.Struct, forbid_unknown_fields=True):
    # Abort on the first bad record instead of reporting it and going on without it.
    strict: bool = False
    # Word 3-gram Jaccard at or above this makes two records near-duplicates.
    near_dup_threshold: float = 0.8
    eval_share: float = 0.1
    min_eval: int = 2
    # Share of the train split added from the general prompt set, against forgetting (0 = none).
    general_share: float = 0.0
    # None = the general set shipped in training/data/general.jsonl.
    general_path: str | None = None
    # Records the start adapter learned before (a loop run's registered dataset, minus its held-out "old"
    # slice): checked like the data and replayed into each trial's train split so that the new records make
    # ``new_share`` of it (the recipe's share in a search; 0 or less: replay them all).
    replay_path: str | None = None
    new_share: float = 0.5
    # Chosen from the length distribution (p99 rounded up to a multiple of 64), never above this.
    max_seq_cap: int = 2048
    # Fixed length instead of the one chosen from the distribution.
    max_seq_length: int | None = None


class LoraSettings(msgspec.Struct, forbid_unknown_fields=True):
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    def __post_init__(self) -> None:
        # vLLM's --max-lora-rank tops out at 64 in the default deployment.
        if not 1 <= self.rank <= 64:
            raise ValueError(f"LoRA rank must be 1..64, got {self.rank}")

    def at_rank(self, rank: int) -> LoraSettings:
        """The same settings at another rank, alpha scaled with it (so the adapter's scale alpha/rank holds)."""
        if rank == self.rank:
            return self
        return msgspec.structs.replace(self, rank=rank, alpha=max(1, round(self.alpha * rank / self.rank)))


class TrainingSchedule(msgspec.Struct, forbid_unknown_fields=True):
    """How the hand loop runs: steps, batches, learning rate, evaluation cadence and early stopping."""

    steps: int = 200
    batch_size: int = 4
    grad_accum: int = 1
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.1
    eval_every: int = 25
    # Evaluations without a new best validation loss before training stops.
    patience: int = 3
    seed: int = 0
    # Also stop when the general-set loss passes the gate's forgetting limit: a point past it is never kept,
    # and more steps at the same recipe only forget more. The loop turns it on; a hand run keeps its last best.
    stop_on_forgetting: bool = False


class Gate(msgspec.Struct, forbid_unknown_fields=True):
    """Margins a candidate must clear against the baseline (current production adapter, or the base model)."""

    # Candidate validation loss must be at most baseline * (1 - min_loss_improvement).
    min_loss_improvement: float = 0.0
    # General-set loss may rise by at most this share over the base model's (forgetting).
    max_forgetting: float = 0.1
    # When references exist: candidate ROUGE-L may be at most this far below the baseline's.
    max_rouge_drop: float = 0.02
    # Per named eval set (``TrainSpec.eval_sets``): candidate loss may be at most baseline loss x this ratio.
    # The closed loop asks for 0.9 on the new traffic (win by 10%) and 1.1 on the old (lose at most 10%).
    slices: dict[str, float] = msgspec.field(default_factory=dict)
    # ... plus this many nats per token: near zero loss, a ratio alone turns noise into a verdict.
    slice_slack: float = 0.0
    # Per named eval set: at least this share of its held-out prompts must get a greedy answer closer to the
    # reference (ROUGE-L) than the baseline's ("the new topic is answered the corrected way").
    answer_wins: dict[str, float] = msgspec.field(default_factory=dict)
    # Per named eval set: at least this share must get an answer at most ``answer_tolerance`` less close than
    # the baseline's ("the old topic is still answered as production answers it").
    answer_holds: dict[str, float] = msgspec.field(default_factory=dict)
    answer_tolerance: float = 0.1

    @property
    def checks_answers(self) -> bool:
        return bool(self.answer_wins or self.answer_holds)


class Recipe(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One point of a recipe search: what changes between trials of one run."""

    learning_rate: float
    steps: int
    rank: int = 16
    # Share of general data replayed in the train split, against forgetting the base model's skills.
    general_share: float = 0.1
    # With replay data (``DataSettings.replay_path``): the share of the train split the new records make, the
    # rest replayed from what the start adapter learned, against forgetting the old topic.
    new_share: float = 0.5

    @property
    def name(self) -> str:
        return (
            f"lr={self.learning_rate:g} steps={self.steps} rank={self.rank} general={self.general_share:g} "
            f"new={self.new_share:g}"
        )


class RecipeSearch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Recipes tried in order, one trial each, until one passes or the budget is spent.

    The first trial always runs; later ones start only while ``max_trials`` and ``max_seconds`` allow.
    """

    recipes: tuple[Recipe, ...]
    max_trials: int = 3
    max_seconds: float = 1800.0
    # Stop at the first passing trial (cheaper) or try the whole budget and keep the best passing one.
    stop_at_first_pass: bool = True


class GuardEval(msgspec.Struct, forbid_unknown_fields=True):
    """Greedy answers of the baseline and the candidate to held-out prompts, passed through the output guards.

    The gate's answer checks (``Gate.answer_wins``/``answer_holds``) read the same answers; without a
    ``guard_eval`` in the spec they use these defaults and no guard runs.
    """

    # Prompts, shared evenly between the named eval sets (the eval split when there are none).
    prompts: int = 16
    max_new_tokens: int = 48
    # The guards' exported models (the gateway's <home>/models/guards): without the toxicity model there,
    # only PII is checked (a training child never exports or downloads a model).
    models_dir: str | None = None


class TrainSpec(msgspec.Struct, forbid_unknown_fields=True):
    data: str
    base: str
    out: str
    method: Method = "lora"
    objective: Objective = "sft"
    # DPO's temperature: how far the trained policy may move from the reference per unit of preference.
    dpo_beta: float = 0.1
    data_config: DataSettings = msgspec.field(default_factory=DataSettings)
    lora: LoraSettings = msgspec.field(default_factory=LoraSettings)
    loop: TrainingSchedule = msgspec.field(default_factory=TrainingSchedule)
    gate: Gate = msgspec.field(default_factory=Gate)
    # The adapter currently in production for this alias; None compares against the base model.
    production_adapter: str | None = None
    # Warm start: continue training this adapter (its rank wins over ``lora.rank``) instead of a fresh one.
    start_adapter: str | None = None
    # Several recipes tried inside this one run; None trains ``loop``/``lora``/``data_config`` once.
    search: RecipeSearch | None = None
    # Named held-out eval sets (JSONL) scored for every model, e.g. the new topic and the old one; the
    # leakage check keeps their prompts out of the train split too.
    eval_sets: dict[str, str] = msgspec.field(default_factory=dict)
    redact_pii: bool = True
    # Generated answers scored against references (exact match, ROUGE-L); 0 skips generation.
    task_eval_limit: int = 16
    # PII-leak and toxicity rates of the baseline's and the candidate's answers (None: not measured).
    guard_eval: GuardEval | None = None
    # Written by the child while it runs, read by the job runner (set by the runner).
    status_file: str | None = None
    resume: bool = True
