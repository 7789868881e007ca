"""The registry on real SQLite and real PostgreSQL: numbering, moves, refusals that change nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from gateway.adapters.models import RegisterRequest
from gateway.adapters.registry import Registry
from gateway.domain_errors import Conflict, DomainError, NotFound


@pytest.fixture
def registry(db_url: str) -> Iterator[Registry]:
    store = Registry(db_url)
    yield store
    store.close()


def register(registry: Registry, adapter_dir: Callable[..., str], alias: str = "support", **extra: object):
    weights = adapter_dir(f"{alias}-{uuid.uuid4().hex[:6]}")
    return registry.register(RegisterRequest(alias=alias, weights=weights, base_model="smol", **extra))


def test_versions_are_numbered_per_alias_and_keep_their_record(registry: Registry, adapter_dir) -> None:
    first = register(registry, adapter_dir, author="key-1", training_run={"steps": 40}, eval_results={"acc": 0.9})
    second = register(registry, adapter_dir)
    other = register(registry, adapter_dir, alias="billing")
    assert (first.name, second.name, other.name) == ("support@1", "support@2", "billing@1")
    stored = registry.snapshot().versions["support@1"]
    assert stored == first
    assert stored.stage == "candidate" and stored.training_run == {"steps": 40} and stored.eval_results == {"acc": 0.9}
    assert registry.snapshot().aliases["support"].production is None


def test_promote_archives_the_old_version_and_rollback_returns_to_it(registry: Registry, adapter_dir) -> None:
    register(registry, adapter_dir)
    register(registry, adapter_dir)
    registry.promote("support", 1)
    snapshot = registry.promote("support", 2)
    alias = snapshot.aliases["support"]
    assert (alias.production, alias.previous) == (2, 1)
    assert snapshot.versions["support@1"].stage == "archived"
    assert snapshot.versions["support@2"].stage == "production"
    back = registry.promote("support", 1, rollback=True)
    assert back.aliases["support"].production == 1 and back.aliases["support"].previous is None
    assert back.versions["support@2"].stage == "archived"


def test_canary_and_its_end(registry: Registry, adapter_dir) -> None:
    register(registry, adapter_dir)
    register(registry, adapter_dir)
    registry.promote("support", 1)
    snapshot = registry.set_canary("support", 2, 0.25)
    assert (snapshot.aliases["support"].canary, snapshot.aliases["support"].canary_share) == (2, 0.25)
    assert snapshot.versions["support@2"].stage == "canary"
    snapshot = registry.end_canary("support")
    assert snapshot.aliases["support"].canary is None and snapshot.versions["support@2"].stage == "candidate"
    registry.set_canary("support", 2, 0.25)
    promoted = registry.promote("support", 2)
    assert promoted.aliases["support"].canary is None and promoted.versions["support@2"].stage == "production"


@pytest.mark.parametrize(
    ("move", "refusal"),
    [
        (lambda r: r.promote("support", 9), NotFound),
        (lambda r: r.promote("nope", 1), NotFound),
        (lambda r: r.promote("support", 1), Conflict),  # archived after support@2 took over
        (lambda r: r.set_canary("support", 1, 0.1), Conflict),
        (lambda r: r.end_canary("support"), Conflict),
    ],
)
def test_refused_moves_change_nothing(registry: Registry, adapter_dir, move, refusal: type[DomainError]) -> None:
    register(registry, adapter_dir)
    register(registry, adapter_dir)
    registry.promote("support", 1)
    registry.promote("support", 2)
    before = registry.snapshot()
    with pytest.raises(DomainError) as raised:
        move(registry)
    assert type(raised.value) is refusal and raised.value.subject == "adapter"
    assert registry.snapshot() == before


def test_retire_removes_the_alias_and_archives_its_versions(registry: Registry, adapter_dir) -> None:
    register(registry, adapter_dir)
    registry.promote("support", 1)
    snapshot = registry.retire("support")
    assert "support" not in snapshot.aliases and snapshot.versions["support@1"].stage == "archived"
    assert register(registry, adapter_dir).number == 2  # numbers are never reused


def test_two_stores_on_one_database_see_each_others_revisions(registry: Registry, adapter_dir) -> None:
    other = Registry(registry.engine.url.render_as_string(hide_password=False))
    try:
        start = other.revision()
        register(registry, adapter_dir)
        assert other.revision() == start + 1
        assert "support@1" in other.snapshot().versions
    finally:
        other.close()
