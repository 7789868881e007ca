"""The registry's types: immutable versions, aliases that point at them, and the admin API's request bodies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway.edge.schemas import ModelCard

Stage = Literal["candidate", "canary", "production", "archived"]
# Alias names become Prometheus labels and vLLM LoRA names: keep them short and plain.
AliasName = Annotated[str, Meta(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")]
Share = Annotated[float, Meta(gt=0, lt=1)]


def version_name(alias: str, number: int) -> str:
    """``support@3``: the public pinned name and the LoRA name vLLM knows the version by."""
    return f"{alias}@{number}"


class AdapterVersion(msgspec.Struct, frozen=True):
    alias: str
    number: int
    base_model: str  # a configured model route: the backends that can serve this adapter
    weights: str  # a peft adapter directory readable by the gateway and by vLLM
    stage: Stage
    created: float
    author: str | None = None
    training_run: dict[str, Any] | None = None
    reference_embeddings: str | None = None
    eval_results: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def name(self) -> str:
        return version_name(self.alias, self.number)

    @property
    def dataset(self) -> str | None:
        """The JSONL this version was trained on: the closed loop retrains from it."""
        return (self.training_run or {}).get("dataset")


class Alias(msgspec.Struct, frozen=True):
    name: str
    production: int | None = None
    canary: int | None = None
    canary_share: float = 0.0
    # The production version before the last promotion: where a rollback goes.
    previous: int | None = None


class Snapshot(msgspec.Struct, frozen=True):
    """The whole registry at one revision: what the request path resolves against, without a database."""

    revision: int
    aliases: dict[str, Alias]
    versions: dict[str, AdapterVersion]  # by version name

    def version(self, alias: str, number: int | None) -> AdapterVersion | None:
        return None if number is None else self.versions.get(version_name(alias, number))

    def production(self, alias: str) -> AdapterVersion | None:
        """The version serving ``alias`` outside any canary; None for an unknown alias or one not yet promoted."""
        found = self.aliases.get(alias)
        return None if found is None else self.version(alias, found.production)

    def served(self) -> list[AdapterVersion]:
        """Versions some alias sends traffic to: every backend of their base model must hold them."""
        out = []
        for alias in self.aliases.values():
            for number in (alias.production, alias.canary):
                version = self.version(alias.name, number)
                if version is not None:
                    out.append(version)
        return out


EMPTY = Snapshot(0, {}, {})


class RegisterRequest(msgspec.Struct, forbid_unknown_fields=True):
    alias: AliasName
    weights: str
    base_model: str
    author: str | None = None
    training_run: dict[str, Any] | None = None
    reference_embeddings: str | None = None
    eval_results: dict[str, Any] = msgspec.field(default_factory=dict)
    # Training data (JSONL): kept in `training_run`, embedded as the drift reference when none is given.
    dataset: str | None = None


class PromoteRequest(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[int, Meta(ge=1)]


class CanaryRequest(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[int, Meta(ge=1)]
    share: Share


class AliasView(msgspec.Struct):
    name: str
    production: str | None
    canary: str | None
    canary_share: float
    previous: str | None
    versions: list[AdapterVersion]


class AdapterList(msgspec.Struct):
    revision: int
    aliases: list[AliasView]


def alias_view(snapshot: Snapshot, alias: Alias) -> AliasView:
    def name(number: int | None) -> str | None:
        return None if number is None else version_name(alias.name, number)

    versions = sorted((v for v in snapshot.versions.values() if v.alias == alias.name), key=lambda v: v.number)
    return AliasView(
        alias.name, name(alias.production), name(alias.canary), alias.canary_share, name(alias.previous), versions
    )


class AdapterCard(ModelCard, kw_only=True):
    """``GET /v1/models`` entry for an alias or a served version: its base model and the version answering now."""

    parent: str
    version: str


def adapter_cards(snapshot: Snapshot) -> list[AdapterCard]:
    """Each alias with a production version, then every version some alias serves (pinnable by name)."""
    cards = []
    for alias in sorted(snapshot.aliases):
        version = snapshot.production(alias)
        if version is not None:
            cards.append(
                AdapterCard(id=alias, created=int(version.created), parent=version.base_model, version=version.name)
            )
    for version in sorted(snapshot.served(), key=lambda version: version.name):
        cards.append(
            AdapterCard(id=version.name, created=int(version.created), parent=version.base_model, version=version.name)
        )
    return cards
