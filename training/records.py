"""What a run leaves next to its adapter: ``run.json`` (everything needed to audit or repeat it) and a
peft-style model card ``README.md`` with the measured numbers."""

from __future__ import annotations

import platform
import time
from importlib import metadata
from pathlib import Path

import msgspec

from training.config import LoraSettings
from training.evaluate import GateVerdict, ModelScores
from training.formatting import LengthStats
from training.guard_eval import GuardReport
from training.prepare import DataReport
from training.results import LoopResult

LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "safetensors", "msgspec")


class RunRecord(msgspec.Struct):
    spec: dict
    method_requested: str
    method_used: str
    method_note: str
    seed: int
    adapter_dir: str
    data: DataReport
    general_sha256: str
    lengths: LengthStats
    max_seq_length: int
    base: ModelScores
    baseline: ModelScores
    candidate: ModelScores
    loop: LoopResult
    gate: GateVerdict
    durations_s: dict[str, float]
    peak_rss_mib: float
    versions: dict[str, str]
    device: str
    # Every recipe the run tried (training.search.Trial.summary); the kept one is ``candidate``/``gate``.
    trials: list[dict] = msgspec.field(default_factory=list)
    kept_trial: int = 0
    finished_at: float = msgspec.field(default_factory=time.time)
    # The baseline's and the candidate's held-out answers through the output guards (spec.guard_eval).
    guards: GuardReport | None = None


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write(record: RunRecord, adapter_dir: Path) -> tuple[Path, Path]:
    run_json = adapter_dir / "run.json"
    run_json.write_bytes(msgspec.json.format(msgspec.json.encode(record)))
    card = adapter_dir / "README.md"
    card.write_text(model_card(record))
    return run_json, card


def _row(scores: ModelScores) -> str:
    general = f"{scores.general_loss:.4f}" if scores.general_loss is not None else "n/a"
    task = f"{scores.task.exact_match:.3f} | {scores.task.rouge_l:.3f}" if scores.task else "n/a | n/a"
    return f"| {scores.name} | {scores.eval_loss:.4f} | {scores.perplexity:.2f} | {general} | {task} |"


def _slice_table(models: list[ModelScores]) -> list[str]:
    """Loss per named eval set, one row per model (the baseline once when it is the base model)."""
    names = sorted(models[-1].slices)
    if not names:
        return []
    unique = list({scores.name: scores for scores in models}.values())
    rows = [f"| {s.name} | " + " | ".join(f"{s.slices[n]:.4f}" for n in names if n in s.slices) + " |" for s in unique]
    return [
        "",
        "Loss on each named eval set:",
        "",
        f"| model | {' | '.join(names)} |",
        "|---" * (len(names) + 1) + "|",
        *rows,
    ]


def model_card(record: RunRecord) -> str:
    base = record.spec["base"]
    loop, lora = record.loop, msgspec.convert(record.spec["lora"], LoraSettings)
    if record.trials:  # a search may have kept another rank than the spec's
        lora = lora.at_rank(record.trials[record.kept_trial]["recipe"]["rank"])
    rows = [_row(record.base)]
    if record.baseline.name != record.base.name:
        rows.append(_row(record.baseline))
    rows.append(_row(record.candidate))
    verdict = "passed" if record.gate.passed else "failed: " + "; ".join(record.gate.reasons)
    slices = _slice_table([record.base, record.baseline, record.candidate])
    return "\n".join(
        [
            "---",
            f"base_model: {base}",
            "library_name: peft",
            "pipeline_tag: text-generation",
            "tags:",
            f"- base_model:adapter:{base}",
            f"- {record.method_used}",
            "- driftgate",
            "---",
            "",
            f"# {Path(record.adapter_dir).name}",
            "",
            f"A {record.method_used.upper()} adapter (rank {lora.rank}, alpha {lora.alpha}, "
            f"modules {', '.join(lora.target_modules)}) for `{base}`, trained by driftgate.",
            *([f"\n{record.method_note}"] if record.method_note else []),
            "",
            "## Evaluation (measured at the end of this run)",
            "",
            "| model | validation loss | perplexity | general-set loss | exact match | ROUGE-L |",
            "|---|---|---|---|---|---|",
            *rows,
            *slices,
            "",
            f"Gate: **{verdict}**.",
            "",
            "## Training",
            "",
            f"- data: `{record.data.path}` (sha256 `{record.data.sha256[:16]}…`), {record.data.train} train / "
            f"{record.data.eval} eval records, {record.data.general_mixed} general records mixed in",
            f"- removed: {len(record.data.problems)} bad records, {len(record.data.duplicates)} duplicates, "
            f"{len(record.data.leaks)} eval leaks; {record.data.redacted} records PII-redacted",
            f"- token lengths: p50 {record.lengths.p50}, p99 {record.lengths.p99}, max {record.lengths.max}; "
            f"max_seq_length {record.max_seq_length}",
            f"- steps: {loop.steps_run} (best at {loop.best_step}{', stopped early' if loop.stopped_early else ''}), "
            f"{loop.tokens_per_s:.0f} tokens/s on {record.device}, peak RSS {record.peak_rss_mib:.0f} MiB",
            *(
                [f"- recipe search: {len(record.trials)} trials; kept trial {record.kept_trial} (numbers above)"]
                if len(record.trials) > 1
                else []
            ),
            f"- seed {record.seed}; versions: "
            + ", ".join(f"{name} {version}" for name, version in record.versions.items()),
            "",
        ]
    )
