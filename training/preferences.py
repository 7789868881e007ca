"""Preference pairs (prompt, chosen, rejected): read, written and redacted without torch, so the loop
controller in the gateway can build them for a DPO job."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from training.data import Example, Message
from training.prepare import Redact


class Pair(msgspec.Struct, frozen=True):
    """One preference: for ``prompt`` (a string or chat messages), ``chosen`` is preferred over ``rejected``."""

    prompt: str | list[dict[str, str]]
    chosen: str
    rejected: str

    def example(self, answer: str) -> Example:
        turns = [{"role": "user", "content": self.prompt}] if isinstance(self.prompt, str) else self.prompt
        messages = tuple(Message(t["role"], t["content"]) for t in turns)
        return Example((*messages, Message("assistant", answer)), line=0, source="pairs")


def read_pairs(path: str | Path) -> list[Pair]:
    """JSONL of ``{"prompt", "chosen", "rejected"}``; a bad line is an error naming its number."""
    pairs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            pair = msgspec.json.decode(line, type=Pair)
        except msgspec.DecodeError as exc:
            raise ValueError(f"{path}:{number}: not a preference pair ({exc})") from exc
        if not pair.chosen.strip() or not pair.rejected.strip() or pair.chosen.strip() == pair.rejected.strip():
            raise ValueError(f"{path}:{number}: chosen and rejected must be two different, non-empty answers")
        pairs.append(pair)
    return pairs


def write_pairs(path: Path, pairs: list[Pair]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(msgspec.to_builtins(p), ensure_ascii=False) + "\n" for p in pairs))


def redact_pair(pair: Pair, redact: Redact) -> Pair:
    prompt = (
        redact(pair.prompt)
        if isinstance(pair.prompt, str)
        else [{**turn, "content": redact(turn["content"])} for turn in pair.prompt]
    )
    return Pair(prompt, redact(pair.chosen), redact(pair.rejected))
