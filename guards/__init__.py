"""Guardrails: text in, verdict out (PII, toxicity by category, prompt injection). Never imports the gateway.

Typical use, per alias and per request::

    models = GuardModels(models_dir / "guards")      # once per process
    guards = Guards(GuardsSettings(), models)           # once per alias config
    context = RedactionContext()                      # once per request
    verdict = guards.input.run(prompt, context, "user")  # .blocked, .text, .decisions (role: who wrote it)
    stream = guards.stream(context)                   # per streamed choice: .feed(delta), .flush()
"""

from guards.config import (
    CategoryPolicy,
    GuardsSettings,
    InjectionSettings,
    PiiSettings,
    StageSettings,
    StreamSettings,
    ToxicityModel,
    ToxicitySettings,
)
from guards.pipeline import Guard, GuardModels, Guards, StagePipeline
from guards.redaction import RedactionContext
from guards.streaming import StreamRedactor, StreamStep
from guards.types import Action, Decision, Finding, Stage, Verdict

__all__ = [
    "Action",
    "CategoryPolicy",
    "Decision",
    "Finding",
    "Guard",
    "GuardModels",
    "Guards",
    "GuardsSettings",
    "InjectionSettings",
    "PiiSettings",
    "RedactionContext",
    "Stage",
    "StageSettings",
    "StagePipeline",
    "StreamSettings",
    "StreamRedactor",
    "StreamStep",
    "ToxicitySettings",
    "ToxicityModel",
    "Verdict",
]
