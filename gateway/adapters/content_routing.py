"""``model: "auto"``: answer with the alias whose own training prompts sit nearest to the prompt.

Every adapter version registered with a dataset already carries the embeddings of its training prompts (its
drift reference). The router condenses each production version's reference into a few prototypes (k-means
centroids: one per sub-topic the adapter was trained on, unlike a single centroid that points between them)
and scores a prompt against an alias as its cosine to the nearest prototype. When the best alias is not near
enough (``min_similarity``), not clearly ahead of the next one (``margin``), or behind the fallback model's
own prompts (a prompt file standing for the general traffic the base model should answer, by default the
general set the trainer replays), the prompt goes to the fallback model instead of to an adapter that was never
trained for it. Measured on held-out prompts, and timed up to 1,000 aliases, in ``python -m bench.auto_route``.

Scoring is one matrix-vector product and a row-wise max, written here because it is a few lines of numpy on
data the gateway already holds; a vector database would add a service for well under a millisecond of work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import numpy as np

from gateway.adapters.models import Snapshot

log = logging.getLogger(__name__)


class AutoRouteSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Routing by content (needs drift detection on: its embedder and the versions' references)."""

    # The model name clients send to be routed by content.
    name: str = "auto"
    # The aliases it may choose among; empty = every alias whose production version has a reference.
    aliases: list[str] = msgspec.field(default_factory=list)
    # The model that answers a prompt near no alias: a configured base model; None = the chosen base model of the
    # candidates (they must then share one).
    fallback: str | None = None
    # Prompts (.txt or .jsonl) standing for what the fallback model answers: nearer to these than to every
    # alias means fallback. None = the general set bundled with the trainer (training/data/general.jsonl).
    fallback_prompts: str | None = None
    # Cosine to the alias's nearest prototype below which no alias is near enough.
    min_similarity: float = 0.2
    # How far ahead of the runner-up the best alias must be (cosine); closer than this is a tie: fallback.
    margin: float = 0.05
    # Prototypes (k-means centroids of its training prompts' embeddings) that stand for each alias: on the
    # held-out set as accurate as every prompt, and what keeps 1,000 aliases under a millisecond.
    prototypes: int = 16


# The fallback prompts' place in the index: not a valid alias name, so no alias can shadow it.
FALLBACK = "<fallback>"


class Choice(msgspec.Struct, frozen=True):
    """The router's answer for one prompt: ``alias`` None means the fallback model answers."""

    alias: str | None
    similarity: float
    runner_up: str | None = None
    runner_up_similarity: float = 0.0


class ContentIndex:
    """Each alias's prototypes stacked into one matrix, padded to the same count so one product scores all."""

    def __init__(self, prototypes: dict[str, np.ndarray]) -> None:
        self.aliases = sorted(prototypes)
        width = max((len(prototypes[alias]) for alias in self.aliases), default=0)
        # Padding repeats an alias's first prototype: a duplicate cannot change its nearest-prototype score.
        blocks = [_padded(_unit_rows(prototypes[alias]), width) for alias in self.aliases]
        self.matrix = np.concatenate(blocks) if blocks else np.zeros((0, 0), dtype=np.float32)
        self._width = width

    def scores(self, vector: np.ndarray) -> list[tuple[str, float]]:
        """Each alias's cosine between ``vector`` and its nearest prototype, best first."""
        if not self.aliases:
            return []
        query = _unit_rows(vector.reshape(1, -1))[0]
        nearest = (self.matrix @ query).reshape(len(self.aliases), self._width).max(axis=1)
        order = np.argsort(-nearest)
        return [(self.aliases[i], float(nearest[i])) for i in order]


def prototypes_of(embeddings: np.ndarray, count: int) -> np.ndarray:
    """``count`` k-means centroids of ``embeddings`` (all of them when there are no more than ``count``)."""
    rows = _unit_rows(embeddings)
    if len(rows) <= count:
        return rows
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=count, n_init=1, random_state=0).fit(rows).cluster_centers_.astype(np.float32)


class ContentRouter:
    """Chooses an alias for a prompt; follows the registry so a promotion changes what an alias stands for."""

    def __init__(
        self,
        settings: AutoRouteSettings,
        embed: Callable[[Sequence[str]], np.ndarray],
        fallback_reference: np.ndarray | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._embed = embed
        self._fallback = (
            {} if fallback_reference is None else {FALLBACK: prototypes_of(fallback_reference, settings.prototypes)}
        )
        self.index = ContentIndex(dict(self._fallback))
        self.base_models: dict[str, str] = {}
        self._loaded: dict[str, tuple[str, np.ndarray]] = {}  # alias -> (version name, its prototypes)

    def follow(self, snapshot: Snapshot) -> None:
        """Rebuild the index from the production versions' references (those already loaded are kept)."""
        wanted = set(self.settings.aliases) or set(snapshot.aliases)
        loaded: dict[str, tuple[str, np.ndarray]] = {}
        base_models: dict[str, str] = {}
        for alias in sorted(wanted):
            version = snapshot.production(alias)
            if version is None or not version.reference_embeddings:
                continue
            held = self._loaded.get(alias)
            if held is not None and held[0] == version.name:
                loaded[alias] = held
            else:
                try:
                    reference = np.load(Path(version.reference_embeddings) / "reference.npy")
                    loaded[alias] = (version.name, prototypes_of(reference, self.settings.prototypes))
                except (OSError, ValueError) as exc:
                    log.error("auto routing skips %s: no reference (%s)", alias, exc)
                    continue
            base_models[alias] = version.base_model
        self._loaded, self.base_models = loaded, base_models
        prototypes = {alias: held for alias, (_, held) in loaded.items()}
        self.index = ContentIndex({**prototypes, **self._fallback})

    def embed(self, text: str) -> np.ndarray:
        """The prompt's embedding (the drift embedder's ONNX model; run it off the event loop)."""
        return self._embed([text])[0]

    def choose(self, vector: np.ndarray, allowed: Callable[[str], bool] = lambda alias: True) -> Choice:
        """The alias to answer a prompt embedded as ``vector``, among those ``allowed`` (a key's adapters)."""
        scores = [(alias, score) for alias, score in self.index.scores(vector) if alias == FALLBACK or allowed(alias)]
        if not scores:
            return Choice(alias=None, similarity=0.0)
        best, similarity = scores[0]
        runner_up, second = scores[1] if len(scores) > 1 else (None, 0.0)
        near_enough = best != FALLBACK and similarity >= self.settings.min_similarity
        ahead = runner_up is None or similarity - second >= self.settings.margin
        return Choice(
            alias=best if near_enough and ahead else None,
            similarity=similarity,
            runner_up=runner_up,
            runner_up_similarity=second,
        )

    def fallback_model(self) -> str | None:
        """Where a prompt near no alias goes: the configured fallback, else the candidates' one base model."""
        if self.settings.fallback is not None:
            return self.settings.fallback
        bases = set(self.base_models.values())
        return bases.pop() if len(bases) == 1 else None


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def fallback_reference(settings: AutoRouteSettings, embed: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
    """The embeddings of the prompts the fallback model stands for (the configured file, or the general set)."""
    from monitor.reference import read_prompts
    from training.prepare import GENERAL_PATH

    path = Path(settings.fallback_prompts) if settings.fallback_prompts else GENERAL_PATH
    return embed(list(dict.fromkeys(read_prompts(path))))


def _padded(rows: np.ndarray, width: int) -> np.ndarray:
    if len(rows) == width:
        return rows
    return np.concatenate([rows, np.repeat(rows[:1], width - len(rows), axis=0)])
