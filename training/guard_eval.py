"""What the output guards make of a model's answers to held-out prompts: PII-leak and toxicity rates.

The loop's gate compares the candidate's rates with the baseline's (production, or the base model): a
candidate that learned to write e-mail addresses or insults is caught before any user sees it. ``training``
may import ``guards`` (never ``gateway``); the guards run as the gateway's output stage would, minus the
actions: here a finding only counts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from training import answer_check
from training.answer_check import SliceAnswers
from training.config import GuardEval
from training.data import Example
from training.evaluate import generate

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

    from training.prepare import PreparedData

EXAMPLE_CHARS = 240


class Inspection(msgspec.Struct, frozen=True):
    pii: tuple[str, ...]  # entities found (EMAIL, PHONE, ...)
    toxic: tuple[str, ...]  # toxicity categories over their thresholds
    redacted: str  # the answer with its PII replaced by placeholders


Inspect = Callable[[str], Inspection]


class GuardRates(msgspec.Struct, frozen=True):
    """One model's answers through the output guards."""

    name: str
    answers: int
    pii_leaks: int
    toxic: int
    pii_rate: float
    toxicity_rate: float
    toxicity_checked: bool
    entities: dict[str, int]
    # The first flagged answer, its PII redacted: evidence a person can read without seeing the PII.
    example: str | None = None


class GuardReport(msgspec.Struct, frozen=True):
    baseline: GuardRates
    candidate: GuardRates


def output_inspector(models_dir: str | None) -> tuple[Inspect, bool]:
    """The gateway's default output guards (PII, and toxicity when its exported model is in ``models_dir``)."""
    from guards import GuardModels, InjectionSettings, RedactionContext, StagePipeline, StageSettings, ToxicitySettings
    from guards.jigsaw_export import JIGSAW_MODEL_FILE

    toxicity = models_dir is not None and (Path(models_dir) / JIGSAW_MODEL_FILE).is_file()
    config = StageSettings(toxicity=ToxicitySettings(enabled=toxicity), injection=InjectionSettings(enabled=False))
    pipeline = StagePipeline.build("output", config, GuardModels(models_dir or "/nonexistent"))

    def inspect(text: str) -> Inspection:
        findings = pipeline.inspect(text)
        pii = [f for f in findings if f.guard == "pii"]
        toxic = [f.entity for f in findings if f.guard == "toxicity" and f.action in ("block", "flag")]
        redacted = pipeline.redact(text, [msgspec.structs.replace(f, action="redact") for f in pii], RedactionContext())
        return Inspection(tuple(f.entity for f in pii), tuple(toxic), redacted)

    return inspect, toxicity


def held_out_prompts(
    eval_sets: dict[str, list[Example]], fallback: list[Example], count: int
) -> list[tuple[str, Example]]:
    """Up to ``count`` examples shared evenly between the named eval sets (``fallback``, named "eval", when
    there are none), each with the name of its set."""
    sets = [(name, found) for name, found in sorted(eval_sets.items()) if found] or [("eval", fallback)]
    each = max(1, count // len(sets))
    return [(name, example) for name, found in sets for example in found[:each]][:count]


def answers(model: PeftModel, tokenizer: PreTrainedTokenizerBase, prompts: list[Example], tokens: int) -> list[str]:
    """Greedy answers of whichever adapter is active in ``model`` (short: a leak shows in the first words)."""
    return [generate(model, tokenizer, example, tokens) for example in prompts]


def rates(name: str, texts: list[str], inspect: Inspect, toxicity_checked: bool) -> GuardRates:
    inspected = [inspect(text) for text in texts]
    leaks = [i for i in inspected if i.pii]
    toxic = [i for i in inspected if i.toxic]
    entities: dict[str, int] = {}
    for found in leaks:
        for entity in found.pii:
            entities[entity] = entities.get(entity, 0) + 1
    flagged = next((i for i in inspected if i.pii or i.toxic), None)
    count = len(texts)
    return GuardRates(
        name=name,
        answers=count,
        pii_leaks=len(leaks),
        toxic=len(toxic),
        pii_rate=round(len(leaks) / count, 4) if count else 0.0,
        toxicity_rate=round(len(toxic) / count, 4) if count else 0.0,
        toxicity_checked=toxicity_checked,
        entities=entities,
        example=flagged.redacted[:EXAMPLE_CHARS] if flagged else None,
    )


class GuardedAnswers:
    """The spec's held-out prompts answered by the baseline and the candidate: through the output guards, and
    against their references (``training.answer_check``)."""

    def __init__(self, settings: GuardEval, chosen: list[tuple[str, Example]]) -> None:
        self.settings = settings
        self.slices = [name for name, _ in chosen]
        self.prompts = [example for _, example in chosen]
        self.baseline: list[str] = []

    @classmethod
    def start(cls, settings: GuardEval, data: PreparedData) -> GuardedAnswers:
        return cls(settings, held_out_prompts(data.eval_sets, data.eval, settings.prompts))

    def compare(
        self, candidate: list[str], tolerance: float, redact: Callable[[str], str] | None
    ) -> dict[str, SliceAnswers]:
        references = [example.answer for example in self.prompts]
        asked = [example.prompt for example in self.prompts]
        origins = [example.origin for example in self.prompts]
        return answer_check.compare(
            self.slices, asked, references, self.baseline, candidate, tolerance, redact, origins
        )

    def answer(self, model: PeftModel, tokenizer: PreTrainedTokenizerBase) -> list[str]:
        return answers(model, tokenizer, self.prompts, self.settings.max_new_tokens)

    def report(self, baseline_name: str, candidate: list[str]) -> GuardReport:
        inspect, toxicity = output_inspector(self.settings.models_dir)
        return GuardReport(
            rates(baseline_name, self.baseline, inspect, toxicity),
            rates("candidate", candidate, inspect, toxicity),
        )
