"""The streaming redactor: entities split at any chunk boundary are still redacted, without holding the
whole answer back; a block mid-stream stops the stream."""

from __future__ import annotations

import pytest

from guards import GuardModels, Guards, GuardsSettings, PiiSettings, RedactionContext, StageSettings, StreamStep
from guards.config import StreamSettings
from guards.streaming import StreamRedactor

ANSWER = "Sure. Write to jane.roe@example.org, and pay with 4111 1111 1111 1111 before Friday. Thanks!"
REDACTED = "Sure. Write to <EMAIL_1>, and pay with <CREDIT_CARD_1> before Friday. Thanks!"


@pytest.fixture(scope="module")
def guards(models: GuardModels) -> Guards:
    return Guards(GuardsSettings(), models)


def stream(guards: Guards, chunks: list[str]) -> tuple[str, list[StreamStep]]:
    redactor = guards.stream(RedactionContext())
    steps = [redactor.feed(chunk) for chunk in chunks] + [redactor.flush()]
    return "".join(step.text for step in steps), steps


@pytest.mark.parametrize("entity", ["jane.roe@example.org", "4111 1111 1111 1111"])
def test_entity_split_in_two_at_every_point(guards: Guards, entity: str) -> None:
    start = ANSWER.index(entity)
    for split in range(start + 1, start + len(entity)):
        text, _ = stream(guards, [ANSWER[:split], ANSWER[split:]])
        assert text == REDACTED, split


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13])
def test_small_chunks(guards: Guards, size: int) -> None:
    text, steps = stream(guards, [ANSWER[i : i + size] for i in range(0, len(ANSWER), size)])
    assert text == REDACTED
    counted = {(d.entity, d.action, d.count) for step in steps for d in step.decisions if d.guard == "pii"}
    assert counted == {("EMAIL", "redact", 1), ("CREDIT_CARD", "redact", 1)}
    toxicity = [d for step in steps for d in step.decisions if d.guard == "toxicity"]
    assert len(toxicity) == 1 and toxicity[0].action == "allow"


def test_plain_prose_is_not_held_back(guards: Guards) -> None:
    """The first piece goes out after min_emit_chars (time to first token), later ones hold at most emit_chars."""
    redactor = guards.stream(RedactionContext())
    prose = "The quick brown fox jumps over the lazy dog and keeps running through the field again and again "
    pieces = [redactor.feed(word + " ").text for word in prose.split()]
    first = next(index for index, piece in enumerate(pieces) if piece)
    assert len(" ".join(prose.split()[: first + 1])) <= 16 + 6  # within a word of min_emit_chars
    emitted = "".join(pieces)
    assert len(emitted) >= len(prose) - 64
    assert emitted + redactor.flush().text == prose


def test_a_stream_is_scanned_once_per_piece_not_once_per_token(guards: Guards) -> None:
    scans = []
    redactor = StreamRedactor(_Counting(guards.output, scans), RedactionContext(), StreamSettings())
    answer = "Sourdough keeps well for two days if you wrap it in a cloth and store it away from the sun. " * 10
    for start in range(0, len(answer), 4):
        redactor.feed(answer[start : start + 4])
    assert redactor.flush().text.endswith("the sun. ")
    assert len(scans) <= len(answer) // 64 + 3, len(scans)


def test_digits_are_held_until_the_number_is_complete(guards: Guards) -> None:
    redactor = guards.stream(RedactionContext())
    first = redactor.feed("Your card number, as requested, is 4111 1111")
    assert "4111" not in first.text
    rest = redactor.feed(" 1111 1111. Anything else?").text + redactor.flush().text
    assert first.text + rest == "Your card number, as requested, is <CREDIT_CARD_1>. Anything else?"


def test_stream_shares_placeholders_with_the_prompt(guards: Guards) -> None:
    context = RedactionContext()
    assert guards.input.run("a@x.io and b@x.io", context).text == "<EMAIL_1> and <EMAIL_2>"
    redactor = guards.stream(context)
    text = redactor.feed("I will mail b@x.io now, ").text + redactor.flush().text
    assert text == "I will mail <EMAIL_2> now, "


@pytest.mark.parametrize("tail", ["", " and then the answer goes on for a while longer about other things"])
def test_toxic_output_blocks_the_stream(guards: Guards, tail: str) -> None:
    """Blocked mid-stream once a piece's worth has come (or at its end, if it ends first); never emitted."""
    redactor = guards.stream(RedactionContext())
    chunks = [
        "Here is my answer: ",
        "you are a stupid fucking ",
        "idiot and ",
        "more",
        *(f" {w}" for w in tail.split()),
    ]
    steps = [redactor.feed(chunk) for chunk in chunks]
    blocked = [step for step in [*steps, redactor.flush()] if step.blocked]
    assert blocked, "a toxic answer must block the stream"
    assert any(step.blocked for step in steps) == bool(tail)
    assert blocked[0].decisions[0].guard == "toxicity" and blocked[0].decisions[0].action == "block"
    assert redactor.feed("after").blocked and redactor.flush().blocked
    assert "fucking" not in "".join(step.text for step in steps)


def test_blocking_entity_blocks_mid_stream(models: GuardModels) -> None:
    stage = StageSettings(pii=PiiSettings(actions={"SECRET": "block"}))
    guards = Guards(GuardsSettings(output=stage), models)
    text, steps = stream(guards, ["Your key is AKIAIOSF", "ODNN7EXAMPLE and that ", "is all there is to say."])
    assert any(step.blocked for step in steps)
    assert "AKIA" not in text


def test_version_after_the_cut_is_not_an_ip(guards: Guards) -> None:
    chunks = ["We upgraded to version ", "1.2.3.4 last week, the server is 203.0.113.9 still.", " Done."]
    text, _ = stream(guards, chunks)
    assert text == "We upgraded to version 1.2.3.4 last week, the server is <IP_ADDRESS_1> still. Done."


def test_code_fence_opened_in_an_earlier_piece(guards: Guards) -> None:
    intro = "Here is the lock file you asked for, with the pinned tool versions listed below:\n```\n"
    chunks = [intro] + ["tool " + "x" * 200 + "\n", "pinned 4.3.2.1\n```\nAll done."]
    text, _ = stream(guards, chunks)
    assert "4.3.2.1" in text


class _Counting:
    """The output pipeline, counting the scans a redactor asks of it."""

    def __init__(self, pipeline, scans: list[int]) -> None:
        self._pipeline = pipeline
        self._scans = scans

    def __getattr__(self, name: str):
        return getattr(self._pipeline, name)

    def inspect(self, text: str, *, starts_in_code: bool = False):
        self._scans.append(len(text))
        return self._pipeline.inspect(text, starts_in_code=starts_in_code)
