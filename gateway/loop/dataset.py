"""A loop run's training data: the alias's registered dataset plus the new samples, split into train and two
held-out eval sets ("new": unseen new samples; "old": unseen records of the registered dataset).

The split happens here, before training, so the gate can judge the candidate on each side separately; the
training module's own checks (bad records, duplicates, PII, leakage against both eval sets) still run on
what is written.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import msgspec

from monitor.request_log import RequestRecord
from training.prepare import in_turn

CHAT_ROUTE = "/v1/chat/completions"
# Routes whose logged prompt is chat messages as JSON (the gateway logs a Responses API input that way).
CHAT_ROUTES = (CHAT_ROUTE, "/v1/responses")


class Assembled(msgspec.Struct, frozen=True):
    train: str
    eval_sets: dict[str, str]
    counts: dict[str, int]
    # The registered records not held out: the training job replays them beside the new samples at each
    # recipe's ``new_share`` (a search can raise the replay after the old slice was forgotten). "" without any.
    replay: str = ""
    # Everything the candidate knows: the registered records and every new sample (held out or not). It is
    # what the candidate registers as its dataset, so the next run replays from the whole history, not from
    # this run's subsampled train split (which would shrink the history at every generation).
    dataset: str = ""


def conversation_of(record: RequestRecord) -> list[dict[str, str]] | None:
    """The logged (already redacted) prompt as chat messages; None when nothing usable was logged."""
    if not record.prompt:
        return None
    if record.route not in CHAT_ROUTES:
        return [{"role": "user", "content": record.prompt}]
    try:
        messages = json.loads(record.prompt)
    except json.JSONDecodeError:
        return None
    kept = [
        {"role": m["role"], "content": m["content"]}
        for m in messages
        if isinstance(m, dict)
        and m.get("role") in ("system", "user", "assistant")
        and isinstance(m.get("content"), str)
    ]
    return kept if any(m["role"] == "user" for m in kept) else None


def sample_from_log(record: RequestRecord, answer: str | None) -> dict[str, Any] | None:
    """A training record from a logged request and the answer to teach (default: the logged answer)."""
    answer = answer if answer is not None else record.completion
    conversation = conversation_of(record)
    if conversation is None or not answer or not answer.strip():
        return None
    if record.route not in CHAT_ROUTES:
        return {"prompt": record.prompt, "completion": answer}
    return {"messages": [*conversation, {"role": "assistant", "content": answer}]}


def assemble(
    out: Path,
    registered: Path | None,
    new: list[dict[str, Any]],
    holdout_share: float,
    origin: str = "",
    seed: int = 0,
) -> Assembled:
    """Write ``train.jsonl`` (the new samples not held out), ``eval-new.jsonl``, with a registered dataset
    ``replay.jsonl`` and ``eval-old.jsonl``, and ``dataset.jsonl`` (registered plus new: what the candidate
    registers) under ``out``.

    The new samples are tagged with ``origin`` (the run that learns them), so a later run can tell what each
    generation learned: the registered records are held out per origin and ``eval-old`` interleaves them,
    because the gate's answer check reads its first prompts and a last generation's few dozen corrections
    beside the first dataset's hundred records were otherwise barely judged (measured: a second drift passed
    the gate and forgot the first drift's topic). The replay is not subsampled here: each trial mixes it in at
    its recipe's ``new_share``, balanced across origins (``training.prepare.mix_replay``).
    """
    if len(new) < 4:
        raise ValueError(f"{len(new)} new samples: at least 4 are needed (2 to train on, 2 to judge by)")
    rng = random.Random(seed)
    old = _lines(registered) if registered is not None else []
    new_lines = [json.dumps({**record, "origin": origin} if origin else record, ensure_ascii=False) for record in new]
    rng.shuffle(new_lines)
    new_held = max(2, round(holdout_share * len(new_lines)))
    held_old, replay = [], []
    for group in _by_origin(old):
        rng.shuffle(group)
        size = max(2, round(holdout_share * len(group))) if len(group) >= 8 else 0
        held_old.append(group[:size])
        replay += group[size:]
    old_held = sum(map(len, held_old))
    out.mkdir(parents=True, exist_ok=True)
    train = new_lines[new_held:]
    files = {
        "train": train,
        "replay": replay,
        "eval-new": new_lines[:new_held],
        "eval-old": in_turn(held_old),
        "dataset": old + new_lines,
    }
    for name, lines in files.items():
        if lines:
            (out / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    eval_sets = {"new": str(out / "eval-new.jsonl")}
    if old_held:
        eval_sets["old"] = str(out / "eval-old.jsonl")
    counts = {
        "registered": len(old),
        "new": len(new_lines),
        "train": len(train),
        "replay": len(replay),
        "eval_new": new_held,
        "eval_old": old_held,
    }
    replay_path = str(out / "replay.jsonl") if replay else ""
    return Assembled(str(out / "train.jsonl"), eval_sets, counts, replay_path, str(out / "dataset.jsonl"))


def _origin_of(line: str) -> str:
    """The run that taught a registered record ("" for the alias's first dataset, and for a bad line)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return ""
    origin = record.get("origin") if isinstance(record, dict) else None
    return origin if isinstance(origin, str) else ""


def _by_origin(lines: list[str]) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for line in lines:
        groups.setdefault(_origin_of(line), []).append(line)
    return list(groups.values())


def _lines(path: Path) -> list[str]:
    # Bad lines travel on: the training module reports each one instead of this module dropping it silently.
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
