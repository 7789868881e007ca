"""Guardrails: text in, verdict out (PII, toxicity by category, prompt injection). Never imports the gateway.

Typical use, per alias and per request::

    models = GuardModels(models_dir / "guards")      # once per process
    guards = Guards(GuardsConfig(), models)           # once per alias config
    context = RedactionContext()                      # once per request
    verdict = guards.input.run(prompt, context, "user")  # .blocked, .text, .decisions (role: who wrote it)
    stream = guards.stream(context)                   # per streamed choice: .feed(delta), .flush()
"""

from guards.config import (
    CategoryPolicy,
    GuardsConfig,
    InjectionConfig,
    PiiConfig,
    StageConfig,
    StreamConfig,
    ToxicityConfig,
    ToxicityModel,
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
    "GuardsConfig",
    "InjectionConfig",
    "PiiConfig",
    "RedactionContext",
    "Stage",
    "StageConfig",
    "StagePipeline",
    "StreamConfig",
    "StreamRedactor",
    "StreamStep",
    "ToxicityConfig",
    "ToxicityModel",
    "Verdict",
]
