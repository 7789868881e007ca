"""One training run end to end: prepare, measure the baseline, train, evaluate, gate, write the records.

Nothing here touches a registry: the caller registers ``RunResult.adapter_dir`` as a candidate when
``RunResult.gate.passed``, so a crash at any point leaves the registry as it was.
"""

from __future__ import annotations

import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from training import answer_check, guard_eval, models, records
from training.answer_check import SliceAnswers
from training.config import GuardEval, Method, Recipe, TrainSpec
from training.data import Example
from training.evaluate import GateVerdict, ModelScores, check_gate, eval_loss, perplexity, task_score
from training.formatting import Encoded, LengthStats, choose_max_seq_length, encode
from training.prepare import (
    GENERAL_PATH,
    REPLAY,
    DataReport,
    PreparedData,
    Redact,
    mix_general,
    mix_replay,
    prepare,
    sha256_file,
)
from training.search import Trial, choose, may_start, next_recipe, plan
from training.status import Phase
from training.status import Progress as Status
from training.trainer import StepReport, load_adapter_weights, seed_everything, train_loop

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

OnStatus = Callable[[Status], None]


class EvalSuite(msgspec.Struct, frozen=True):
    """What every model of a run is scored on: the base model, the production adapter and the candidate."""

    examples: list[Example]  # the eval split as records: references for the generated answers
    encoded: list[Encoded]  # the same split tokenized: validation loss
    general: list[Encoded]  # general prompts never trained on: the forgetting check
    slices: dict[str, list[Encoded]]  # the spec's named eval sets
    pad_id: int
    batch_size: int
    # Answers generated and scored against references; 0 skips generation.
    task_eval_limit: int


class StatusPublisher:
    """The run's :class:`~training.status.Progress`, stamped and handed to ``on_status`` at every change."""

    def __init__(self, total_steps: int, on_status: OnStatus | None) -> None:
        self.status = Status(state="running", total_steps=total_steps)
        self._on_status = on_status

    def phase(self, phase: Phase, *, eval_loss: float | None = None) -> None:
        self.status.phase = phase
        if eval_loss is not None:
            self.status.eval_loss = eval_loss
        self._publish()

    def step(self, report: StepReport) -> None:
        self.status.step = report.step
        self.status.loss = round(report.loss, 5)
        self.status.tokens_per_s = round(report.tokens_per_s, 1)
        if report.eval_loss is not None and report.best_eval_loss is not None:
            self.status.eval_loss = round(report.eval_loss, 5)
            self.status.best_eval_loss = round(report.best_eval_loss, 5)
        self._publish()

    def succeeded(self, run_record: Path) -> None:
        self.status.state, self.status.phase, self.status.run_record = "succeeded", "done", str(run_record)
        self._publish()

    def _publish(self) -> None:
        self.status.updated_at = time.time()
        if self._on_status is not None:
            self._on_status(self.status)


class RunResult(msgspec.Struct):
    adapter_dir: str
    run_record: str
    model_card: str
    method: str
    gate: GateVerdict
    candidate: ModelScores
    baseline: ModelScores
    guards: guard_eval.GuardReport | None = None


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def report_table(report: DataReport) -> Table:
    table = Table(title=f"Data: {report.path}")
    for column in ("line", "check", "detail"):
        table.add_column(column)
    for problem in report.problems:
        table.add_row(str(problem.line), problem.kind, problem.detail)
    for dup in report.duplicates + report.leaks:
        what = "eval prompt" if dup.kind == "leak" else "record"
        table.add_row(str(dup.line), f"{dup.kind}_duplicate", f"of {what} on line {dup.of_line} ({dup.similarity})")
    table.caption = (
        f"{report.records} records: {report.train} train, {report.eval} eval, {report.replay_mixed} replayed, "
        f"{report.general_mixed} general mixed, "
        f"{report.redacted} redacted, {len(report.problems)} bad, {len(report.duplicates)} duplicates, "
        f"{len(report.leaks)} leaks"
    )
    return table


def length_table(stats: LengthStats, chosen: int) -> Table:
    table = Table(title="Token lengths (chat template, train + eval)")
    for column in ("count", "min", "p50", "p90", "p99", "max", "max_seq_length"):
        table.add_column(column, justify="right")
    table.add_row(*(str(v) for v in (stats.count, stats.min, stats.p50, stats.p90, stats.p99, stats.max, chosen)))
    return table


def lengths(data: PreparedData, tokenizer: PreTrainedTokenizerBase, spec: TrainSpec) -> tuple[LengthStats, int]:
    sizes = [len(encode(e, tokenizer).input_ids) for e in data.train + data.eval]
    stats = LengthStats.of(sizes)
    chosen = spec.data_config.max_seq_length or choose_max_seq_length(stats, spec.data_config.max_seq_cap)
    return stats, chosen


def scores(name: str, model: PeftModel, tokenizer: PreTrainedTokenizerBase, suite: EvalSuite) -> ModelScores:
    """One model's numbers on the run's :class:`EvalSuite` (whichever adapter is active in ``model``)."""

    def loss_on(examples: list[Encoded]) -> float:
        return eval_loss(model, examples, suite.pad_id, suite.batch_size)

    loss = loss_on(suite.encoded)
    return ModelScores(
        name,
        round(loss, 5),
        round(perplexity(loss), 4),
        round(loss_on(suite.general), 5),
        task_score(model, tokenizer, suite.examples, suite.task_eval_limit) if suite.task_eval_limit else None,
        {key: round(loss_on(found), 5) for key, found in suite.slices.items()},
    )


def run(
    spec: TrainSpec, *, redact: Redact | None = None, console: Console | None = None, on_status: OnStatus | None = None
) -> RunResult:
    """Prepare once, score the baseline once, then train and gate each recipe of the search (one by default)."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    console = console or Console(stderr=True)
    publisher = StatusPublisher(spec.loop.steps, on_status)

    durations: dict[str, float] = {}
    clock = time.perf_counter()
    publisher.phase("preparing")
    seed_everything(spec.loop.seed)
    # General and replayed records are mixed into train per trial (their shares are part of a recipe), not here.
    unmixed = msgspec.structs.replace(spec.data_config, general_share=0.0, new_share=0.0)
    data = prepare(spec.data, unmixed, redact=redact, seed=spec.loop.seed, eval_sets=spec.eval_sets)
    console.print(report_table(data.report))
    tokenizer = AutoTokenizer.from_pretrained(spec.base)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stats, max_len = lengths(data, tokenizer, spec)
    console.print(length_table(stats, max_len))
    suite = EvalSuite(
        examples=data.eval,
        encoded=[encode(e, tokenizer, max_len) for e in data.eval],
        general=[encode(e, tokenizer, max_len) for e in data.general_eval],
        slices={name: [encode(e, tokenizer, max_len) for e in found] for name, found in data.eval_sets.items()},
        pad_id=pad_id,
        batch_size=spec.loop.batch_size,
        task_eval_limit=spec.task_eval_limit,
    )
    durations["prepare"] = round(time.perf_counter() - clock, 3)

    where = models.device()
    method, note = models.resolve_method(spec.method, where)
    if note:
        console.print(f"[yellow]{note}[/]")
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    model = models.load(spec.base, method, spec.lora, where, where.type == "cuda", spec.start_adapter)

    clock = time.perf_counter()
    publisher.phase("baseline")
    # LoRA's B starts at zero (and DoRA's magnitude at the weight norm): adapter off = the base model.
    with model.disable_adapter():
        base = scores("base", model, tokenizer, suite)
    baseline = base
    # Held-out answers: for the guard gate and for the gate's answer checks (one generation serves both).
    answering = spec.guard_eval or (GuardEval() if spec.gate.checks_answers else None)
    guarded = guard_eval.GuardedAnswers.start(answering, data) if answering else None
    if spec.production_adapter:
        model.load_adapter(spec.production_adapter, adapter_name="production")
        model.set_adapter("production")
        baseline = scores("production", model, tokenizer, suite)
        if guarded:
            guarded.baseline = guarded.answer(model, tokenizer)
        model.set_adapter("default")
        model.delete_adapter("production")
    elif guarded:
        with model.disable_adapter():
            guarded.baseline = guarded.answer(model, tokenizer)
    del model  # every trial loads its own, at its own rank
    durations["baseline"] = round(time.perf_counter() - clock, 3)
    publisher.phase("training", eval_loss=base.eval_loss)

    # All trials run inside this one job rather than one job per trial: the job runners (local process,
    # shared-folder queue, Kubernetes) stay one-job-one-adapter, the data is prepared and the baseline
    # scored once, and the loop controller reads one run record whatever the search did.
    clock = time.perf_counter()
    recipes, search = plan(spec, models.adapter_rank(spec.start_adapter) if spec.start_adapter else None)
    trials: list[Trial] = []
    remaining = list(recipes)
    while remaining and may_start(search, trials, time.perf_counter() - clock):
        index = len(trials)
        recipe = next_recipe(remaining, trials[-1] if trials else None, spec.gate)
        remaining.remove(recipe)
        trial_out = out if len(recipes) == 1 else out / "trials" / str(index)
        context = TrialContext(spec, method, where, data, suite, tokenizer, max_len, base, baseline, guarded, redact)
        trials.append(train_trial(index, recipe, trial_out, context, publisher, console))
        console.print(f"trial {index}: {recipe.name}: " + ("passed" if trials[-1].gate.passed else "failed"))
    chosen = choose(trials)
    adapter_dir = out / "adapter"
    if Path(chosen.adapter_dir) != adapter_dir:
        shutil.rmtree(adapter_dir, ignore_errors=True)
        shutil.copytree(chosen.adapter_dir, adapter_dir)
    candidate, verdict, loop = chosen.candidate, chosen.gate, chosen.loop
    durations["train"] = round(time.perf_counter() - clock, 3)
    guards = None
    if guarded and spec.guard_eval:  # only the kept trial's answers: the other candidates are never registered
        clock = time.perf_counter()
        guards = guarded.report(baseline.name, chosen.answers)
        durations["guard_eval"] = round(time.perf_counter() - clock, 3)
    durations["total"] = round(sum(durations.values()), 3)
    own = sum(example.source != REPLAY for example in data.train)
    data.report.train = own + chosen.replay_mixed + chosen.general_mixed
    data.report.general_mixed, data.report.replay_mixed = chosen.general_mixed, chosen.replay_mixed

    publisher.phase("writing")
    record = records.RunRecord(
        spec=msgspec.to_builtins(spec),
        method_requested=spec.method,
        method_used=method,
        method_note=note,
        seed=spec.loop.seed,
        adapter_dir=str(adapter_dir.resolve()),
        data=data.report,
        general_sha256=sha256_file(spec.data_config.general_path or GENERAL_PATH),
        lengths=stats,
        max_seq_length=max_len,
        base=base,
        baseline=baseline,
        candidate=candidate,
        loop=loop,
        gate=verdict,
        trials=[trial.summary() for trial in trials],
        kept_trial=chosen.index,
        durations_s=durations,
        peak_rss_mib=round(peak_rss_mib(), 1),
        versions=records.library_versions(),
        device=str(where),
        guards=guards,
    )
    run_json, card = records.write(record, adapter_dir)
    console.print(
        f"validation loss {baseline.name} {baseline.eval_loss:.4f} -> candidate {candidate.eval_loss:.4f}; "
        f"gate {'[green]passed[/]' if verdict.passed else '[red]failed[/]: ' + '; '.join(verdict.reasons)}"
    )
    publisher.succeeded(run_json)
    return RunResult(str(adapter_dir), str(run_json), str(card), method, verdict, candidate, baseline, guards)


class TrialContext(msgspec.Struct, frozen=True):
    """What every trial of a run shares: the spec, the prepared data, the eval suite and the baseline scores."""

    spec: TrainSpec
    method: Method
    where: Any
    data: PreparedData
    suite: EvalSuite
    tokenizer: Any
    max_len: int
    base: ModelScores
    baseline: ModelScores
    guarded: guard_eval.GuardedAnswers | None = None
    redact: Redact | None = None


def train_trial(
    index: int, recipe: Recipe, out: Path, context: TrialContext, publisher: StatusPublisher, console: Console
) -> Trial:
    """Train one recipe from a fresh (or the warm-start) adapter, keep its best point within the forgetting
    limit, and gate it against the run's baseline."""
    spec, suite = context.spec, context.suite
    started = time.perf_counter()
    lora = spec.lora.at_rank(recipe.rank)
    where = context.where
    model = models.load(spec.base, context.method, lora, where, where.type == "cuda", spec.start_adapter)
    own, replayed = mix_replay(context.data.train, recipe.new_share, spec.loop.seed)
    mixed, general_mixed = mix_general(own, spec.data_config, recipe.general_share, spec.loop.seed)
    train_set = [encode(e, context.tokenizer, context.max_len) for e in mixed]
    schedule = msgspec.structs.replace(spec.loop, learning_rate=recipe.learning_rate, steps=recipe.steps)
    limit = (context.base.general_loss or 0.0) * (1 + spec.gate.max_forgetting)

    def within_limits() -> bool:
        return not suite.general or eval_loss(model, suite.general, suite.pad_id, suite.batch_size) <= limit

    publisher.status.total_steps = recipe.steps
    publisher.status.message = f"trial {index}: {recipe.name}"
    optimizer = models.optimizer(model, context.method, recipe.learning_rate)
    with _progress_bar(console) as bar:
        task = bar.add_task(f"trial {index}", total=recipe.steps, loss=float("nan"), tps=0.0, ev="-")

        def on_step(step: StepReport) -> None:
            shown = f"{step.eval_loss:.4f}" if step.eval_loss is not None else bar.tasks[task].fields["ev"]
            bar.update(task, completed=step.step, loss=step.loss, tps=step.tokens_per_s, ev=shown)
            publisher.step(step)

        loop = train_loop(
            model,
            optimizer,
            train_set,
            suite.encoded,
            schedule,
            out,
            pad_id=suite.pad_id,
            resume=spec.resume,
            report=on_step,
            within_limits=within_limits,
        )
    publisher.phase("evaluating")
    load_adapter_weights(model, out / "adapter")
    candidate = scores("candidate", model, context.tokenizer, suite)
    verdict = check_gate(spec.gate, candidate, context.baseline, context.base)
    answers: list[str] = []
    compared: dict[str, SliceAnswers] | None = None
    if context.guarded:
        answers = context.guarded.answer(model, context.tokenizer)
        compared = context.guarded.compare(answers, spec.gate.answer_tolerance, context.redact)
        verdict = answer_check.check(spec.gate, verdict, compared) if spec.gate.checks_answers else verdict
    publisher.phase("training")
    seconds = time.perf_counter() - started
    return Trial(
        index,
        recipe,
        candidate,
        verdict,
        loop,
        seconds,
        str(out / "adapter"),
        general_mixed=general_mixed,
        replay_mixed=replayed,
        answers=answers,
        compared=compared,
    )


def _progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("eval {task.fields[ev]}"),
        TextColumn("{task.fields[tps]:.0f} tok/s"),
        TimeRemainingColumn(),
        console=console,
    )
