"""Drift detection's settings and results: plain structs, importable without Evidently (a multi-second import).

The thresholds come from ``python -m bench.drift`` (see docs/drift.md): the ``fire`` threshold is null
mean + 1.5 x (null max - null mean) over 100 same-topic windows of 200 prompts against a 1,000-prompt
reference; ``clear`` is about the null maximum, so a confirmed drift is cleared only by windows that look
like ordinary traffic.
"""

from __future__ import annotations

from typing import Literal

import msgspec

MethodName = Literal["mmd", "distance", "model", "ratio"]


class Thresholds(msgspec.Struct, frozen=True):
    fire: float
    clear: float


# Window of 200 prompts, reference sample of 1,000 (see the module docstring).
CALIBRATED: dict[str, Thresholds] = {
    # MMD^2 (unbiased, RBF kernel with the median heuristic): null mean ~0 whatever the window size.
    "mmd": Thresholds(fire=0.0065, clear=0.0045),
    # Euclidean distance between mean embeddings: its null grows as the window shrinks (0.09 at 100).
    "distance": Thresholds(fire=0.10, clear=0.088),
    # ROC AUC of a reference-vs-current classifier: 0.5 means indistinguishable.
    "model": Thresholds(fire=0.64, clear=0.59),
    # Share of the 384 components whose Wasserstein distance exceeds 0.1 std.
    "ratio": Thresholds(fire=0.69, clear=0.58),
}


class MethodSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which Evidently method scores a window, and where it fires and clears (None: calibrated default)."""

    name: MethodName = "mmd"
    threshold: float | None = None
    clear_threshold: float | None = None
    # Reduce both sets to this many principal components first (Evidently's own option).
    pca_components: int | None = None

    @property
    def thresholds(self) -> Thresholds:
        default = CALIBRATED[self.name]
        fire = default.fire if self.threshold is None else self.threshold
        clear = default.clear if self.clear_threshold is None else self.clear_threshold
        if clear > fire:
            raise ValueError(f"clear_threshold {clear} is above threshold {fire}: drift could never be cleared")
        return Thresholds(fire=fire, clear=clear)


class DriftSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    method: MethodSettings = msgspec.field(default_factory=MethodSettings)
    window_size: int = 200
    # Prompts between two checks; below window_size, windows overlap (and so do their verdicts).
    step: int | None = None
    min_window_size: int = 100
    # A window this old is checked with what it has (if it has min_window_size prompts).
    max_window_age_s: float = 3600.0
    confirm_windows: int = 2
    clear_windows: int = 2
    # Reference rows a check uses: MMD's cost is quadratic in them, its precision bound by the window.
    reference_sample: int = 1000
    # Most novel prompts of a drifted window whose request ids are reported.
    max_drifted_ids: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.min_window_size <= self.window_size:
            raise ValueError("min_window_size must be between 1 and window_size")
        if self.step is not None and not 1 <= self.step <= self.window_size:
            raise ValueError("step must be between 1 and window_size")
        self.method.thresholds  # noqa: B018 - validates the pair early


Status = Literal["no_reference", "collecting", "ok", "drifting"]
Transition = Literal["fired", "resolved"]


class WindowResult(msgspec.Struct, frozen=True):
    alias: str
    version: str
    sequence: int
    size: int
    method: str
    score: float
    threshold: float
    clear_threshold: float
    over: bool
    opened_at: float
    closed_at: float
    # Request ids of the window's prompts farthest from the reference, most novel first.
    novel_request_ids: list[str]


class DriftEvent(msgspec.Struct, frozen=True):
    """A confirmed drift (``fired``) or its end (``resolved``): what an alert is made of."""

    transition: Transition
    alias: str
    version: str
    method: str
    score: float
    threshold: float
    windows: list[WindowResult]
    request_ids: list[str]
    at: float


class Hysteresis(msgspec.Struct):
    """One alias-and-version's verdict so far: what confirmation and clearing count on (kept in the state
    database, so every replica folds windows into the same one)."""

    drifting: bool = False
    over: list[WindowResult] = msgspec.field(default_factory=list)  # consecutive windows over, until confirmed
    under: int = 0  # consecutive windows under the clear threshold, while drifting
    checked: int = 0
    last: WindowResult | None = None
    since: float | None = None
    event: DriftEvent | None = None


class AliasState(msgspec.Struct):
    """What ``GET /admin/drift`` shows for one alias."""

    alias: str
    version: str | None
    status: Status
    pending: int
    min_window_size: int
    window_size: int
    consecutive_over: int = 0
    consecutive_under: int = 0
    windows_checked: int = 0
    last: WindowResult | None = None
    drifting_since: float | None = None
    last_event: DriftEvent | None = None
    note: str = ""
