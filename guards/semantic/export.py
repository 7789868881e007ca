"""One-time training of the model tier's heads (scikit-learn, at export time): embed the labeled prompts with
the shared sentence encoder and fit one head per category (guards/semantic/train.py).

The training set is what measured best on text written apart from it (``python -m bench.guards_semantic``,
docs/guards.md): the project-written prompts by category with their benign look-alikes, and the everyday
benign prompts of the injection sources (the wheels the injection export already fetches). The scraped
sources (Kaggle insults, Real Toxicity Prompts, HateCheck, pyrit) are left out: trained on them as well, the
heads caught a fraction as much of the set written apart (at 1% false blocks per domain: harassment 0.10
against 0.57, threat 0.40 against 0.80, hate 0.05 against 0.24); their comments and statements are another
kind of text than prompts.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from guards.normalize import normalize
from guards.semantic.encoder import SentenceEncoder

log = logging.getLogger(__name__)

HEADS_FILE = "semantic-heads.npz"
# Kept in the file: heads from another recipe are retrained, not served.
RECIPE = "minilm heads v1: written set + 4000 everyday prompts, 5-fold out-of-fold thresholds per benign group"
TARGET_FPR = 0.05
EVERYDAY_PROMPTS = 4000


def ensure_semantic_heads(directory: Path, encoder: SentenceEncoder, console: Console | None = None) -> Path:
    """The heads file in ``directory``, trained first if it is missing or from another recipe."""
    path = Path(directory) / HEADS_FILE
    if path.exists() and _recipe(path) == RECIPE:
        return path
    console = console or Console(stderr=True)
    started = time.monotonic()
    from guards.semantic.sources import CATEGORIES, WRITTEN_TRAIN, everyday_prompts, written
    from guards.semantic.train import train_heads

    with console.status("model tier: fetching the everyday prompts"):
        everyday = everyday_prompts()
    random.Random(7).shuffle(everyday)
    rows = [*written(WRITTEN_TRAIN), *everyday[:EVERYDAY_PROMPTS]]
    with console.status(f"model tier: embedding {len(rows)} labeled prompts"):
        vectors = encoder.embed([normalize(row.text).text for row in rows])
    with console.status("model tier: fitting the heads (5 folds per category)"):
        heads = train_heads(
            vectors,
            [row.categories for row in rows],
            CATEGORIES,
            target_fpr=TARGET_FPR,
            groups=[row.domain or "everyday" for row in rows],
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    heads.save(path, {"recipe": RECIPE, "texts": len(rows), "encoder": encoder.directory.name})
    console.print(f"[green]✓[/] model tier heads ready at {path} ({time.monotonic() - started:.0f} s)")
    return path


def _recipe(path: Path) -> str | None:
    try:
        with np.load(path, allow_pickle=False) as found:
            return json.loads(str(found["meta"])).get("recipe")
    except (OSError, ValueError, KeyError):
        return None
