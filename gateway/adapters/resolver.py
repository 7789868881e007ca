"""From the ``model`` a client sent to the adapter version that answers it, with no database on the way.

The resolver reads an in-memory :class:`Snapshot` that is swapped whole when the registry changes, so a
request sees either the old alias mapping or the new one, never a mix. A canary split is decided by a hash
of the alias and the caller (``user`` field, else API key, else client address): the same caller always
lands on the same side, and the share of callers on the canary converges on the configured share.
"""

from __future__ import annotations

import hashlib

from gateway.adapters.models import EMPTY, AdapterVersion, Snapshot
from monitor import metrics


def bucket(alias: str, caller: str) -> float:
    """A caller's fixed position in [0, 1) for ``alias``; below the canary share means canary."""
    digest = hashlib.blake2b(f"{alias}\0{caller}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Resolver:
    def __init__(self) -> None:
        self.snapshot = EMPTY
        self._published: set[tuple[str, str, str]] = set()

    def update(self, snapshot: Snapshot) -> bool:
        """Swap in ``snapshot`` unless one at least as new is already in place; True when swapped."""
        if snapshot.revision <= self.snapshot.revision and self.snapshot is not EMPTY:
            return False
        self.snapshot = snapshot
        self._publish(snapshot)
        return True

    def resolve(self, model: str, caller: str) -> tuple[AdapterVersion, bool] | None:
        """The version serving ``model`` for ``caller`` and whether it was pinned, or None if nothing does."""
        snapshot = self.snapshot
        alias = snapshot.aliases.get(model)
        if alias is not None:
            if alias.canary is not None and bucket(alias.name, caller) < alias.canary_share:
                return snapshot.version(alias.name, alias.canary), False
            version = snapshot.production(alias.name)
            return None if version is None else (version, False)
        version = snapshot.versions.get(model)
        if version is None or version.stage == "archived" or version.alias not in snapshot.aliases:
            return None
        return version, True

    def _publish(self, snapshot: Snapshot) -> None:
        """``driftgate_adapter_version_info``: 1 for each version an alias serves now, 0 for those it no longer does."""
        current = {(version.alias, version.name, version.stage) for version in snapshot.served()}
        for labels in self._published - current:
            metrics.ADAPTER_VERSION_INFO.labels(*labels).set(0)
        for labels in current:
            metrics.ADAPTER_VERSION_INFO.labels(*labels).set(1)
        self._published = current
