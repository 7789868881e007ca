"""Reference sets: the embeddings of the prompts an adapter version was trained on, stored with it.

A reference is two files in the version's directory: ``reference.npy`` (float32, one row per prompt)
and ``reference.json`` (what it was built from). A base model has no training prompts; its reference is
built from a prompt file that stands for its expected traffic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec
import numpy as np

from monitor.embedder import Embedder

EMBEDDINGS_FILE = "reference.npy"
META_FILE = "reference.json"


class ReferenceMeta(msgspec.Struct, frozen=True):
    alias: str
    version: str
    embedder: str
    count: int
    source: str
    created_at: float


class ReferenceSet(msgspec.Struct, frozen=True):
    """Embeddings that stand for an alias's expected traffic, and where they came from."""

    meta: ReferenceMeta
    embeddings: np.ndarray

    def save(self, directory: Path) -> Path:
        """Write both files into ``directory`` (the adapter version's own directory)."""
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / EMBEDDINGS_FILE, self.embeddings.astype(np.float32, copy=False))
        (directory / META_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(self.meta)))
        return directory

    @classmethod
    def load(cls, directory: Path) -> ReferenceSet:
        meta = msgspec.json.decode((directory / META_FILE).read_bytes(), type=ReferenceMeta)
        return cls(meta=meta, embeddings=np.load(directory / EMBEDDINGS_FILE))


def build_reference(
    embedder: Embedder, prompts: Sequence[str], *, alias: str, version: str, source: str
) -> ReferenceSet:
    """Embed ``prompts`` (an adapter's training prompts, or a base model's prompt file)."""
    unique = list(dict.fromkeys(prompt for prompt in prompts if prompt.strip()))
    if not unique:
        raise ValueError(f"no prompts to build the reference of {alias}@{version} from")
    embeddings = embedder.embed(unique)
    name = embedder.config.model_dir.rstrip("/").rsplit("/", 1)[-1]
    meta = ReferenceMeta(
        alias=alias, version=version, embedder=name, count=len(unique), source=source, created_at=time.time()
    )
    return ReferenceSet(meta=meta, embeddings=embeddings)


def read_prompts(path: Path) -> list[str]:
    """Prompts from a file: plain text (one per line) or JSONL (``prompt``, ``text`` or chat ``messages``).

    For chat records the user turns are the prompt, as the gateway embeds them in production.
    """
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix != ".jsonl":
        return lines
    return [_prompt_of(json.loads(line)) for line in lines]


def _prompt_of(record: dict) -> str:
    for key in ("prompt", "text"):
        if isinstance(record.get(key), str):
            return record[key]
    if isinstance(record.get("messages"), list):
        return user_text(record["messages"])
    raise ValueError(f"a JSONL prompt record needs 'prompt', 'text' or 'messages': {sorted(record)}")


def user_text(messages: Iterable[dict]) -> str:
    """The text a chat request is judged by for drift: its user turns, joined."""
    parts = []
    for message in messages:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):  # OpenAI content parts
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        if isinstance(content, str):
            parts.append(content)
    return "\n".join(parts)
