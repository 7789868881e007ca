"""Stage pipelines: placeholders, masks, blocking, and decisions that never carry the raw value."""

from __future__ import annotations

import msgspec
import pytest

from guards import GuardModels, Guards, GuardsSettings, PiiSettings, RedactionContext, StageSettings, ToxicitySettings
from guards.config import CategoryPolicy
from guards.jigsaw_export import LABELS as JIGSAW_LABELS


@pytest.fixture(scope="module")
def guards(models: GuardModels) -> Guards:
    return Guards(GuardsSettings(), models)


def test_same_value_same_placeholder_across_messages_and_output(guards: Guards) -> None:
    context = RedactionContext()
    first = guards.input.run("Mail ann@example.com and bob@example.com, then ANN@example.com.", context)
    second = guards.input.run("Card 4111-1111-1111-1111 or 4111 1111 1111 1111; ann@example.com again", context)
    answer = guards.output.run("I wrote to bob@example.com about card 4111111111111111.", context)
    assert first.text == "Mail <EMAIL_1> and <EMAIL_2>, then <EMAIL_1>."
    assert second.text == "Card <CREDIT_CARD_1> or <CREDIT_CARD_1>; <EMAIL_1> again"
    assert answer.text == "I wrote to <EMAIL_2> about card <CREDIT_CARD_1>."
    assert first.action == second.action == answer.action == "redact"


def test_a_new_request_starts_numbering_again(guards: Guards) -> None:
    guards.input.run("x@example.com y@example.com", RedactionContext())
    assert guards.input.run("y@example.com", RedactionContext()).text == "<EMAIL_1>"


def test_mask_keeps_the_last_characters(models: GuardModels) -> None:
    stage = StageSettings(pii=PiiSettings(actions={"CREDIT_CARD": "mask", "EMAIL": "redact"}))
    guards = Guards(GuardsSettings(input=stage), models)
    verdict = guards.input.run("card 5555555555554444 mail a@b.io", RedactionContext())
    assert verdict.text == "card ************4444 mail <EMAIL_1>"
    assert verdict.action == "redact"


def test_block_action_on_an_entity_blocks_the_text(models: GuardModels) -> None:
    stage = StageSettings(pii=PiiSettings(actions={"SECRET": "block"}))
    verdict = Guards(GuardsSettings(input=stage), models).input.run("use AKIAIOSFODNN7EXAMPLE", RedactionContext())
    assert verdict.blocked and verdict.text == ""
    assert [(d.entity, d.action, d.count) for d in verdict.decisions if d.guard == "pii"] == [("SECRET", "block", 1)]


def test_toxic_input_is_blocked_and_clean_input_allowed(guards: Guards) -> None:
    toxic = guards.input.run("Shut up, you stupid fucking idiot.", RedactionContext())
    clean = guards.input.run("Could you summarise the quarterly report for me?", RedactionContext())
    assert toxic.blocked
    assert [(d.guard, d.action) for d in toxic.decisions] == [("toxicity", "block")]
    assert toxic.decisions[0].score is not None and toxic.decisions[0].score >= 0.8
    assert clean.action == "allow" and clean.text == "Could you summarise the quarterly report for me?"


def test_threshold_is_per_alias(models: GuardModels) -> None:
    lenient = StageSettings(
        toxicity=ToxicitySettings(categories={label: CategoryPolicy(threshold=1.01) for label in JIGSAW_LABELS})
    )
    text = "Shut up, you stupid fucking idiot."
    assert not Guards(GuardsSettings(input=lenient), models).input.run(text, RedactionContext()).blocked
    assert Guards(GuardsSettings(), models).input.run(text, RedactionContext()).blocked


def test_decisions_carry_no_raw_value(guards: Guards) -> None:
    text = "Reach me at carol@example.org or +1 415-555-2671, ssn 536-90-4399."
    verdict = guards.input.run(text, RedactionContext())
    encoded = msgspec.json.encode(verdict.decisions).decode()
    for value in ("carol@example.org", "415-555-2671", "536-90-4399"):
        assert value not in encoded
    pii = {(d.entity, d.action, d.count, d.stage) for d in verdict.decisions if d.guard == "pii"}
    assert pii == {("EMAIL", "redact", 1, "input"), ("PHONE", "redact", 1, "input"), ("US_SSN", "redact", 1, "input")}


def test_disabled_guards_pass_text_through(models: GuardModels) -> None:
    guards = Guards(GuardsSettings(enabled=False), models)
    verdict = guards.input.run("you fucking idiot, a@b.io", RedactionContext())
    assert (verdict.text, verdict.action, verdict.decisions) == ("you fucking idiot, a@b.io", "allow", ())


def test_config_decodes_from_yaml_shaped_data() -> None:
    raw = {"input": {"pii": {"actions": {"EMAIL": "mask"}}, "toxicity": {"threshold": 0.5}}}
    config = msgspec.convert(raw, GuardsSettings)
    assert config.input.pii.actions == {"EMAIL": "mask"}
    assert config.input.toxicity.threshold == 0.5
    assert config.output.toxicity.threshold == 0.8
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"input": {"pii": {"actions": {"EMAIL": "shred"}}}}, GuardsSettings)
