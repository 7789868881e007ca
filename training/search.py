"""A bounded recipe search: which recipes a run tries, which trial it keeps, and what to say when none passes.

Pure bookkeeping over :class:`Trial` records, so selection, budgets and advice are tested without training.
The trials themselves run inside one training job (``training.run``), see there for why.
"""

from __future__ import annotations

import msgspec

from training.answer_check import SliceAnswers
from training.config import Gate, Recipe, RecipeSearch, TrainSpec
from training.evaluate import GateVerdict, ModelScores
from training.results import LoopResult


class Trial(msgspec.Struct):
    """One recipe trained and gated: what the run's timeline shows for it."""

    index: int
    recipe: Recipe
    candidate: ModelScores
    gate: GateVerdict
    loop: LoopResult
    seconds: float
    adapter_dir: str
    general_mixed: int = 0  # general records replayed in this trial's train split
    replay_mixed: int = 0  # records of the start adapter's data replayed in it
    # Greedy answers to the held-out prompts (``training.guard_eval``) and how they compare with the baseline's.
    answers: list[str] = msgspec.field(default_factory=list)
    compared: dict[str, SliceAnswers] | None = None

    @property
    def shortfall(self) -> float:
        """Sum of the relative gaps past every missed limit: 0 for a passing trial, ranks failing ones."""
        return sum(max(0.0, miss.by) for miss in self.gate.misses)

    def summary(self) -> dict:
        return {
            "trial": self.index,
            "recipe": msgspec.to_builtins(self.recipe),
            "passed": self.gate.passed,
            "eval_loss": self.candidate.eval_loss,
            "general_loss": self.candidate.general_loss,
            "slices": self.candidate.slices,
            "limits": {check: round(value, 5) for check, value in self.gate.limits.items()},
            "misses": [
                {"check": m.check, "value": round(m.value, 5), "limit": round(m.limit, 5), "by": round(m.by, 4)}
                for m in self.gate.misses
            ],
            "answers": msgspec.to_builtins(self.compared) if self.compared is not None else None,
            "steps_run": self.loop.steps_run,
            "best_step": self.loop.best_step,
            "stop_reason": self.loop.stop_reason,
            "seconds": round(self.seconds, 2),
        }


def recipe_of(spec: TrainSpec) -> Recipe:
    """The single recipe a spec without a search trains."""
    data = spec.data_config
    return Recipe(spec.loop.learning_rate, spec.loop.steps, spec.lora.rank, data.general_share, data.new_share)


def plan(spec: TrainSpec, start_rank: int | None = None) -> tuple[list[Recipe], RecipeSearch]:
    """The recipes the search may try (``max_trials`` of them at most; :func:`next_recipe` picks each). A warm
    start keeps the starting adapter's rank, so recipes that differ only in rank become one (peft cannot
    continue training an adapter at another rank)."""
    search = spec.search or RecipeSearch((recipe_of(spec),), max_trials=1)
    recipes: list[Recipe] = []
    for recipe in search.recipes:
        if start_rank is not None:
            recipe = msgspec.structs.replace(recipe, rank=start_rank)
        if recipe not in recipes:
            recipes.append(recipe)
    return recipes, search


def may_start(search: RecipeSearch, trials: list[Trial], elapsed_s: float) -> bool:
    """Whether another trial may start: the first always does; then the budget and the first pass decide."""
    if not trials:
        return True
    if search.stop_at_first_pass and any(t.gate.passed for t in trials):
        return False
    if len(trials) >= search.max_trials:
        return False
    # A trial that would likely end past the budget does not start: estimate it by the slowest so far.
    return elapsed_s + max(t.seconds for t in trials) <= search.max_seconds


def next_recipe(remaining: list[Recipe], last: Trial | None, gate: Gate) -> Recipe:
    """The next recipe to try: the planned order, unless the last trial says which way to go.

    Each missed limit says one of three things. The trial learned too little (validation, a slice the gate
    asks to improve, its answers' wins or the preference margin): go on with the strongest recipe left
    (learning rate x steps). It forgot the general set (the forgetting limit): the gentlest, with the most
    general replay. It forgot the old topic (a slice the gate asks to hold, its answers' holds): the most
    replay of the start adapter's data. Whenever it forgot while learning (too little, or the old topic, which
    the gentler recipes were measured to keep only by learning too little), the most replay of the kind it
    forgot and, within it, the strongest.
    """
    if last is None or not last.gate.misses:
        return remaining[0]
    kinds = {_kind(miss.check, gate) for miss in last.gate.misses}

    def strength(recipe: Recipe) -> float:
        return recipe.learning_rate * recipe.steps

    def replay(recipe: Recipe) -> float:
        shares = {"general": recipe.general_share, "old": 1 - recipe.new_share}
        return sum(share for kind, share in shares.items() if kind in kinds)

    if kinds == {"new"}:
        return max(remaining, key=lambda r: (strength(r), r.general_share))
    if kinds == {"general"}:
        return max(remaining, key=lambda r: (replay(r), -strength(r)))
    return max(remaining, key=lambda r: (replay(r), strength(r)))


def _kind(check: str, gate: Gate) -> str:
    """Which way a missed check points: "general" (forgot the base model's skills), "old" (forgot what the
    start adapter served) or "new" (learned too little)."""
    if check == "forgetting":
        return "general"
    if check.startswith("answers_holds:") or gate.slices.get(check, 0.0) >= 1:
        return "old"
    return "new"


def choose(trials: list[Trial]) -> Trial:
    """The passing trial with the lowest validation loss; without one, the trial that came closest."""
    passed = [t for t in trials if t.gate.passed]
    if passed:
        return min(passed, key=lambda t: (t.candidate.eval_loss, t.index))
    return min(trials, key=lambda t: (t.shortfall, t.index))


def describe(summary: dict) -> str:
    """One trial summary (:meth:`Trial.summary`) as a timeline line: its recipe and which limits it missed."""
    recipe = msgspec.convert(summary["recipe"], Recipe).name
    if summary["passed"]:
        return f"trial {summary['trial']} ({recipe}): passed, validation loss {summary['eval_loss']}"
    missed = ", ".join(
        f"{m['check']} by {m['by']:.1%} ({m['value']} past {m['limit']})" for m in summary.get("misses", [])
    )
    return f"trial {summary['trial']} ({recipe}): missed {missed}"


def advice(summaries: list[dict]) -> list[str]:
    """What an operator can change when no trial passed, from which limits the trials missed."""
    misses = [m for s in summaries for m in s.get("misses", [])]
    checks = {m["check"] for m in misses}
    tips = []
    if "forgetting" in checks:
        closest = min(m["by"] for m in misses if m["check"] == "forgetting")
        tips.append(
            f"the forgetting limit was missed (closest trial by {closest:.1%}): loosen the policy's "
            "`train.max_forgetting`, or raise `train.general_share` so more general data is replayed"
        )
    answers = {check for check in checks if check.startswith("answers_")}
    if checks - {"forgetting"} - answers:
        tips.append(
            "the held-out loss limits were missed: collect more corrections (more varied phrasings) before the "
            "next alert, or loosen `train.new_loss_ratio` / `train.old_loss_ratio`"
        )
    if answers:
        tips.append(
            "the held-out answers missed (the loss fell, the greedy answers did not follow): collect more "
            "corrections, or lower `train.min_new_answer_wins` / `train.min_old_answer_holds`"
        )
    tips.append("or approve by hand: set the alias's policy to `approval: manual` and register the closest adapter")
    return tips


def order_by_lessons(recipes: list[Recipe], past: list[dict]) -> list[Recipe]:
    """Recipes ordered so the one that came closest last time (its trial summary in ``past``) goes first.

    ``past`` is the list of trial summaries (:meth:`Trial.summary`) of the alias's last search; a passing
    trial counts as closest, then the smallest total shortfall. Recipes never tried keep their order after it.
    """
    if not past:
        return list(recipes)

    def gap(summary: dict) -> float:
        return 0.0 if summary.get("passed") else sum(max(0.0, m["by"]) for m in summary.get("misses", []))

    best = min(past, key=gap)
    lesson = msgspec.convert(best["recipe"], Recipe)
    return [lesson, *(r for r in recipes if r != lesson)]
