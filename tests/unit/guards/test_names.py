"""Names through Presidio + spaCy when a model is installed; skipped with a warning when none is."""

from __future__ import annotations

import logging

import pytest

from guards import GuardModels, Guards, GuardsSettings, PiiSettings, RedactionContext, StageSettings
from guards.ner import installed_model


def test_missing_model_skips_names_with_a_warning(models: GuardModels, caplog: pytest.LogCaptureFixture) -> None:
    stage = StageSettings(pii=PiiSettings(names=True, ner_model="no_such_spacy_model"))
    with caplog.at_level(logging.WARNING, logger="guards.ner"):
        guards = Guards(GuardsSettings(input=stage), models)
    assert "no spaCy English model" in caplog.text
    assert guards.input.run("Angela Merkel met a@b.io", RedactionContext()).text == "Angela Merkel met <EMAIL_1>"


@pytest.mark.skipif(installed_model() is None, reason="no spaCy English model installed")
def test_person_and_location_are_redacted(models: GuardModels) -> None:
    guards = Guards(GuardsSettings(input=StageSettings(pii=PiiSettings(names=True))), models)
    verdict = guards.input.run("Yesterday Barack Obama flew from Chicago to Paris.", RedactionContext())
    assert "Obama" not in verdict.text and "Chicago" not in verdict.text
    assert "<PERSON_1>" in verdict.text and "<LOCATION_1>" in verdict.text
