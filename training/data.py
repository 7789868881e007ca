"""Reading training JSONL: every record becomes an :class:`Example` or a :class:`Problem` with its line number.

Accepted shapes, one JSON object a line::

    {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}
    {"prompt": "...", "completion": "..."}

Either may carry ``"reference"`` (the expected answer, scored by exact match and ROUGE-L).
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

ROLES = frozenset({"system", "user", "assistant"})


class Message(msgspec.Struct, frozen=True):
    role: str
    content: str


class Example(msgspec.Struct, frozen=True):
    messages: tuple[Message, ...]
    line: int
    source: str = "data"
    reference: str | None = None
    # Which run taught the record (a loop run's new samples carry it): replay draws from each origin in turn.
    origin: str = ""

    @property
    def prompt(self) -> str:
        """Everything but the last answer: what a leakage check compares."""
        return "\n".join(m.content for m in self.messages[:-1])

    @property
    def answer(self) -> str:
        return self.messages[-1].content

    @property
    def text(self) -> str:
        return "\n".join(m.content for m in self.messages)


class Problem(msgspec.Struct, frozen=True):
    line: int
    kind: str
    detail: str
    source: str = "data"


class BadData(Exception):
    """A strict run met a bad record."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.source}:{problem.line}: {problem.kind}: {problem.detail}")
        self.problem = problem


def read_jsonl(path: str | Path, source: str = "data") -> tuple[list[Example], list[Problem]]:
    examples: list[Example] = []
    problems: list[Problem] = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            found = parse_record(line, number, source)
            (examples if isinstance(found, Example) else problems).append(found)
    return examples, problems


def parse_record(line: str, number: int, source: str = "data") -> Example | Problem:
    def problem(kind: str, detail: str) -> Problem:
        return Problem(number, kind, detail, source)

    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return problem("malformed_json", str(exc))
    if not isinstance(record, dict):
        return problem("not_an_object", type(record).__name__)
    reference = record.get("reference")
    if reference is not None and not isinstance(reference, str):
        return problem("bad_field", "reference must be a string")
    if "messages" in record:
        raw = record["messages"]
        if not isinstance(raw, list) or not raw:
            return problem("bad_field", "messages must be a non-empty list")
        messages = []
        for index, message in enumerate(raw):
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                return problem("bad_field", f"messages[{index}] needs a string content")
            if message.get("role") not in ROLES:
                return problem("wrong_role", f"messages[{index}].role = {message.get('role')!r}")
            messages.append(Message(message["role"], message["content"]))
    elif "prompt" in record or "completion" in record:
        prompt, completion = record.get("prompt"), record.get("completion")
        if not isinstance(prompt, str) or not isinstance(completion, str):
            return problem("missing_field", "prompt and completion must both be strings")
        messages = [Message("user", prompt), Message("assistant", completion)]
    else:
        return problem("missing_field", "neither messages nor prompt/completion")
    if messages[-1].role != "assistant":
        return problem("wrong_role", "the last message must be the assistant's answer")
    if not any(m.role == "user" for m in messages):
        return problem("wrong_role", "no user message")
    for index, message in enumerate(messages):
        if not message.content.strip():
            kind = "empty_answer" if message.role == "assistant" else "empty_message"
            return problem(kind, f"messages[{index}] ({message.role}) is empty")
    origin = record.get("origin")
    return Example(tuple(messages), number, source, reference, origin if isinstance(origin, str) else "")
