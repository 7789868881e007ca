"""From a JSONL file to clean train/eval splits: checks, PII redaction, deduplication, leakage, general mix.

Redaction is injected (``redact``), not imported: ``training`` imports nothing of ours, and the composition
point (``training.cli``, or the gateway) builds the callable from ``guards``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from itertools import zip_longest
from pathlib import Path
from typing import TypeVar

import msgspec

from training.config import DataSettings
from training.data import BadData, Example, Message, Problem, read_jsonl
from training.dedup import NearDuplicateIndex

T = TypeVar("T")
REPLAY = "replay"  # the source of records read from ``DataSettings.replay_path``

GENERAL_PATH = Path(__file__).with_name("data") / "general.jsonl"
Redact = Callable[[str], str]


class Duplicate(msgspec.Struct, frozen=True):
    """Record ``line`` was removed: it repeats ``of_line`` (``kind`` exact/near, or leak: an eval prompt)."""

    line: int
    of_line: int
    kind: str
    similarity: float


class DataReport(msgspec.Struct):
    path: str
    sha256: str
    records: int = 0
    problems: list[Problem] = msgspec.field(default_factory=list)
    duplicates: list[Duplicate] = msgspec.field(default_factory=list)
    leaks: list[Duplicate] = msgspec.field(default_factory=list)
    redacted: int = 0
    train: int = 0
    eval: int = 0
    general_mixed: int = 0
    replay_mixed: int = 0  # records of ``DataSettings.replay_path`` in train


class PreparedData(msgspec.Struct):
    train: list[Example]
    eval: list[Example]
    # General prompts never mixed into train: the forgetting check's loss is measured on them.
    general_eval: list[Example]
    report: DataReport
    # The spec's named eval sets, redacted like the rest.
    eval_sets: dict[str, list[Example]] = msgspec.field(default_factory=dict)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare(
    path: str | Path,
    config: DataSettings,
    *,
    redact: Redact | None = None,
    seed: int = 0,
    eval_sets: dict[str, str] | None = None,
) -> PreparedData:
    """``eval_sets``: named held-out JSONL files; their bad records are reported under their name."""
    report = DataReport(str(path), sha256_file(path))
    examples, report.problems = read_jsonl(path)
    if config.replay_path:
        replayed, problems = read_jsonl(config.replay_path, source=REPLAY)
        examples, report.problems = examples + replayed, report.problems + problems
    report.records = len(examples) + len(report.problems)
    held_out: dict[str, list[Example]] = {}
    for name, held_out_path in (eval_sets or {}).items():
        held_out[name], problems = read_jsonl(held_out_path, source=name)
        report.problems += problems
        if not held_out[name]:
            raise ValueError(f"eval set {name!r} ({held_out_path}) has no usable records")
    if config.strict and report.problems:
        raise BadData(report.problems[0])
    if redact is not None:
        examples, report.redacted = redact_all(examples, redact)
        held_out = {name: redact_all(found, redact)[0] for name, found in held_out.items()}
    examples, report.duplicates = deduplicate(examples, config.near_dup_threshold)
    # Validation is drawn from the run's own records only: it picks the kept step by what this run is for,
    # while the replayed records' topic is guarded by the gate's held-out "old" slice.
    train, evaluation = split([e for e in examples if e.source != REPLAY], config, seed)
    train += [e for e in examples if e.source == REPLAY]
    every_eval = evaluation + [example for found in held_out.values() for example in found]
    train, report.leaks = remove_leaks(train, every_eval, config.near_dup_threshold)
    general_eval = general_examples(config)[1]
    train, report.replay_mixed = mix_replay(train, config.new_share, seed)
    train, mixed = mix_general(train, config, config.general_share, seed)
    report.train, report.eval, report.general_mixed = len(train), len(evaluation), mixed
    return PreparedData(train, evaluation, general_eval, report, held_out)


def redact_all(examples: list[Example], redact: Redact) -> tuple[list[Example], int]:
    out, changed = [], 0
    for example in examples:
        messages = tuple(Message(m.role, redact(m.content)) for m in example.messages)
        reference = redact(example.reference) if example.reference is not None else None
        changed += messages != example.messages or reference != example.reference
        out.append(msgspec.structs.replace(example, messages=messages, reference=reference))
    return out, changed


def deduplicate(examples: list[Example], threshold: float) -> tuple[list[Example], list[Duplicate]]:
    """The first of each group of (near-)identical records is kept; the rest are reported."""
    index = NearDuplicateIndex(threshold)
    kept: list[Example] = []
    removed: list[Duplicate] = []
    for example in examples:
        match = index.match(example.text)
        if match is None:
            index.add(example.text)
            kept.append(example)
        else:
            of, similarity = match
            kind = "exact" if similarity == 1.0 else "near"
            removed.append(Duplicate(example.line, kept[of].line, kind, round(similarity, 3)))
    return kept, removed


def split(examples: list[Example], config: DataSettings, seed: int) -> tuple[list[Example], list[Example]]:
    shuffled = examples[:]
    random.Random(seed).shuffle(shuffled)
    size = max(config.min_eval, round(config.eval_share * len(shuffled)))
    if size >= len(shuffled):
        raise ValueError(f"{len(shuffled)} usable records: too few for an eval split of {size}")
    return shuffled[size:], shuffled[:size]


def remove_leaks(
    train: list[Example], evaluation: list[Example], threshold: float
) -> tuple[list[Example], list[Duplicate]]:
    """Train records whose prompt is (nearly) an eval prompt go: otherwise eval measures memory."""
    index = NearDuplicateIndex(threshold)
    for example in evaluation:
        index.add(example.prompt)
    kept, leaks = [], []
    for example in train:
        match = index.match(example.prompt)
        if match is None:
            kept.append(example)
        else:
            leaks.append(Duplicate(example.line, evaluation[match[0]].line, "leak", round(match[1], 3)))
    return kept, leaks


def general_examples(config: DataSettings) -> tuple[list[Example], list[Example]]:
    """The general set, split once: every fourth record for the forgetting check, the rest to mix in."""
    examples, problems = read_jsonl(config.general_path or GENERAL_PATH, source="general")
    if problems:
        raise BadData(problems[0])
    held_out = examples[::4]
    return [e for i, e in enumerate(examples) if i % 4], held_out


def mix_general(train: list[Example], config: DataSettings, share: float, seed: int) -> tuple[list[Example], int]:
    """``train`` plus general records making up ``share`` of the result, and how many were mixed in."""
    pool = general_examples(config)[0]
    mixed = mix_count(len(train), share, len(pool))
    return train + random.Random(seed).sample(pool, mixed), mixed


def mix_replay(train: list[Example], new_share: float, seed: int) -> tuple[list[Example], int]:
    """``train``'s own records plus replayed ones (read from ``replay_path``) so the own make ``new_share`` of
    the result (0 or less: every replayed record), and how many were replayed."""
    own = [example for example in train if example.source != REPLAY]
    pool = [example for example in train if example.source == REPLAY]
    count = len(pool) if new_share <= 0 else mix_count(len(own), 1 - new_share, len(pool))
    return own + by_origin_in_turn(pool, random.Random(seed))[:count], count


def by_origin_in_turn(examples: list[Example], rng: random.Random) -> list[Example]:
    """Shuffled within each origin, then one of each origin in turn: a replay sample keeps what a later
    generation learned from a few dozen records as well as the first dataset's hundreds (drawn uniformly, a
    second drift replayed a handful of the first drift's corrections and forgot that topic)."""
    groups: dict[str, list[Example]] = {}
    for example in examples:
        groups.setdefault(example.origin, []).append(example)
    return in_turn([rng.sample(group, len(group)) for group in groups.values()])


def in_turn(groups: list[list[T]]) -> list[T]:
    """The first of each group, then the second of each, and so on."""
    return [item for row in zip_longest(*groups) for item in row if item is not None]


def mix_count(train: int, share: float, available: int) -> int:
    """General records so that they make up ``share`` of the mixed train split."""
    if share <= 0:
        return 0
    return min(available, round(train * share / (1 - share)))
