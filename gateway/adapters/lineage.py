"""Where a version came from: its training run, data snapshot, drift event and parent, back to the first.

The facts live in each version's ``training_run`` (the loop writes ``parent``, ``data_sha256`` and
``drift_event`` when it registers a candidate); a version registered by hand without a ``parent`` ends the
chain.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.adapters.models import AdapterVersion, Snapshot, version_name
from gateway.adapters.registry import not_found


class LineageStep(msgspec.Struct, frozen=True):
    version: str
    stage: str
    created: float
    author: str | None
    # The production version the training started from (None: the first of its line, or registered by hand).
    parent: str | None
    loop_run: str | None
    job: str | None
    # sha256 of each data file the version was trained and evaluated on, by role (train, eval-new, eval-old).
    data_sha256: dict[str, str]
    # The alert that started its loop run: labels, annotations and when it arrived.
    drift_event: dict[str, Any] | None


class Lineage(msgspec.Struct, frozen=True):
    version: str
    # From the version asked about back to the first one (parent links followed until none is recorded).
    chain: list[LineageStep]


def step(version: AdapterVersion) -> LineageStep:
    run = version.training_run or {}
    return LineageStep(
        version=version.name,
        stage=version.stage,
        created=version.created,
        author=version.author,
        parent=run.get("parent"),
        loop_run=run.get("loop_run"),
        job=run.get("job"),
        data_sha256=dict(run.get("data_sha256") or {}),
        drift_event=run.get("drift_event"),
    )


def lineage(snapshot: Snapshot, alias: str, number: int) -> Lineage:
    name = version_name(alias, number)
    version = snapshot.versions.get(name)
    if version is None:
        raise not_found(f"The adapter version `{name}`")
    chain, seen = [], set()
    while version is not None and version.name not in seen:  # a hand-written parent loop ends, not hangs
        seen.add(version.name)
        chain.append(step(version))
        parent = chain[-1].parent
        version = snapshot.versions.get(parent) if parent else None
    return Lineage(name, chain)
