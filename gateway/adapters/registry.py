"""The adapter registry on SQLite (embedded) or PostgreSQL (cluster), over SQLAlchemy Core.

It lives in the same database as the request log (``<home>/driftgate.db`` by default, or the cluster's
PostgreSQL URL): one file to back up, one URL to configure, and the two never share a table. The schema is
versioned by its own row in ``driftgate_schema`` rather than by Alembic, for the request log's reasons (a
few tables created ``IF NOT EXISTS`` by every gateway process at startup; Alembic arrives with the first
real migration).

Every change runs in one transaction that starts by bumping the revision counter: that row lock
serialises writers across gateway processes, an error anywhere rolls the whole change back, and the new
revision is what other workers poll to know their in-memory snapshot is stale. Calls are synchronous:
run them in a thread, never on the event loop.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import sqlalchemy as sa

from gateway.adapters.models import AdapterVersion, Alias, RegisterRequest, Snapshot, Stage, version_name
from gateway.domain_errors import Conflict, NotFound
from monitor.database import create_engine, ensure_schema, upsert_ignoring

SCHEMA_VERSION = 1
SCHEMA_COMPONENT = "adapters"

metadata = sa.MetaData()
state = sa.Table(
    "adapter_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("revision", sa.BigInteger, nullable=False),
)
versions = sa.Table(
    "adapter_versions",
    metadata,
    sa.Column("alias", sa.String(64), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("base_model", sa.Text, nullable=False),
    sa.Column("weights", sa.Text, nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("created", sa.Double, nullable=False),
    sa.Column("author", sa.Text),
    sa.Column("training_run", sa.Text),  # JSON
    sa.Column("reference_embeddings", sa.Text),
    sa.Column("eval_results", sa.Text, nullable=False),  # JSON
)
aliases = sa.Table(
    "adapter_aliases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("production", sa.Integer),
    sa.Column("canary", sa.Integer),
    sa.Column("canary_share", sa.Double, nullable=False),
    sa.Column("previous", sa.Integer),
)


def not_found(what: str) -> NotFound:
    return NotFound("adapter", f"{what} does not exist.")


def conflict(message: str) -> Conflict:
    return Conflict("adapter", message)


class Registry:
    def __init__(self, url: str, *, sqlite_busy_timeout_ms: int = 5_000) -> None:
        self.engine = create_engine(url, sqlite_busy_timeout_ms)
        self.dialect = self.engine.dialect.name
        self._create_schema()

    def close(self) -> None:
        self.engine.dispose()

    def revision(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(state.c.revision).where(state.c.id == 1)).scalar_one()

    def snapshot(self) -> Snapshot:
        with self.engine.connect() as conn:
            return _snapshot(conn)

    def register(self, request: RegisterRequest) -> AdapterVersion:
        """Add the alias's next version as a candidate (and the alias itself, the first time)."""
        with self.engine.begin() as conn:
            _bump(conn)
            last = conn.execute(sa.select(sa.func.max(versions.c.number)).where(versions.c.alias == request.alias))
            version = AdapterVersion(
                alias=request.alias,
                number=(last.scalar() or 0) + 1,
                base_model=request.base_model,
                weights=request.weights,
                stage="candidate",
                created=time.time(),
                author=request.author,
                training_run=_with_dataset(request.training_run, request.dataset),
                reference_embeddings=request.reference_embeddings,
                eval_results=request.eval_results,
            )
            conn.execute(sa.insert(versions).values(_version_row(version)))
            if _alias(conn, request.alias) is None:
                conn.execute(sa.insert(aliases).values(name=request.alias, canary_share=0.0))
            return version

    def annotate(self, alias: str, number: int, key: str, evidence: dict[str, Any]) -> Snapshot:
        """Add evidence (a canary's signals, say) to a version's eval results; weights and stage stay as they are."""
        with self.engine.begin() as conn:
            _bump(conn)
            version = _require_version(conn, alias, number)
            results = {**version.eval_results, key: evidence}
            conn.execute(
                sa.update(versions)
                .where(versions.c.alias == alias, versions.c.number == number)
                .values(eval_results=msgspec.json.encode(results).decode())
            )
            return _snapshot(conn)

    def promote(self, alias: str, number: int, *, rollback: bool = False) -> Snapshot:
        """Make ``number`` the production version; the one it replaces is archived and becomes ``previous``.

        A rollback may bring back an archived version (the one it returns to always is); a promotion may not.
        """
        with self.engine.begin() as conn:
            _bump(conn)
            current = _require_alias(conn, alias)
            target = _require_version(conn, alias, number)
            if target.stage == "archived" and not rollback:
                raise conflict(f"{target.name} is archived; register it again or use rollback to return to it.")
            if current.production == number:
                raise conflict(f"{target.name} is already the production version of `{alias}`.")
            if current.production is not None:
                _set_stage(conn, alias, current.production, "archived")
            if current.canary is not None and current.canary != number:
                _set_stage(conn, alias, current.canary, "candidate")
            _set_stage(conn, alias, number, "production")
            previous = None if rollback else current.production
            conn.execute(
                sa.update(aliases)
                .where(aliases.c.name == alias)
                .values(production=number, canary=None, canary_share=0.0, previous=previous)
            )
            return _snapshot(conn)

    def set_canary(self, alias: str, number: int, share: float) -> Snapshot:
        with self.engine.begin() as conn:
            _bump(conn)
            current = _require_alias(conn, alias)
            target = _require_version(conn, alias, number)
            if current.production is None:
                raise conflict(f"`{alias}` has no production version yet: promote one before a canary.")
            if target.stage in ("archived", "production"):
                raise conflict(f"{target.name} is {target.stage}; a canary must be a candidate version.")
            if current.canary is not None and current.canary != number:
                _set_stage(conn, alias, current.canary, "candidate")
            _set_stage(conn, alias, number, "canary")
            conn.execute(sa.update(aliases).where(aliases.c.name == alias).values(canary=number, canary_share=share))
            return _snapshot(conn)

    def end_canary(self, alias: str) -> Snapshot:
        """Send all of the alias's traffic back to production; the canary version returns to candidate."""
        with self.engine.begin() as conn:
            _bump(conn)
            current = _require_alias(conn, alias)
            if current.canary is None:
                raise conflict(f"`{alias}` has no canary.")
            _set_stage(conn, alias, current.canary, "candidate")
            conn.execute(sa.update(aliases).where(aliases.c.name == alias).values(canary=None, canary_share=0.0))
            return _snapshot(conn)

    def retire(self, alias: str) -> Snapshot:
        """Remove an alias from service: it stops resolving and every version is archived (rows are kept)."""
        with self.engine.begin() as conn:
            _bump(conn)
            _require_alias(conn, alias)
            conn.execute(sa.update(versions).where(versions.c.alias == alias).values(stage="archived"))
            conn.execute(sa.delete(aliases).where(aliases.c.name == alias))
            return _snapshot(conn)

    def _create_schema(self) -> None:
        ensure_schema(self.engine, SCHEMA_COMPONENT, SCHEMA_VERSION, metadata.sorted_tables)
        with self.engine.begin() as conn:
            conn.execute(upsert_ignoring(self.engine, state, "id").values(id=1, revision=0))


def _bump(conn: sa.Connection) -> None:
    # First statement of every change: takes the write lock (SQLite) or the row lock (PostgreSQL) up front.
    conn.execute(sa.update(state).where(state.c.id == 1).values(revision=state.c.revision + 1))


def _alias(conn: sa.Connection, name: str) -> Alias | None:
    row = conn.execute(sa.select(aliases).where(aliases.c.name == name)).first()
    return None if row is None else Alias(**row._mapping)


def _require_alias(conn: sa.Connection, name: str) -> Alias:
    found = _alias(conn, name)
    if found is None:
        raise not_found(f"The adapter alias `{name}`")
    return found


def _require_version(conn: sa.Connection, alias: str, number: int) -> AdapterVersion:
    row = conn.execute(sa.select(versions).where(versions.c.alias == alias, versions.c.number == number)).first()
    if row is None:
        raise not_found(f"The adapter version `{version_name(alias, number)}`")
    return _version(row)


def _set_stage(conn: sa.Connection, alias: str, number: int, stage: Stage) -> None:
    conn.execute(sa.update(versions).where(versions.c.alias == alias, versions.c.number == number).values(stage=stage))


def _snapshot(conn: sa.Connection) -> Snapshot:
    revision = conn.execute(sa.select(state.c.revision).where(state.c.id == 1)).scalar_one()
    found = {row.name: Alias(**row._mapping) for row in conn.execute(sa.select(aliases))}
    by_name = {}
    for row in conn.execute(sa.select(versions)):
        version = _version(row)
        by_name[version.name] = version
    return Snapshot(revision, found, by_name)


def _with_dataset(training_run: dict[str, Any] | None, dataset: str | None) -> dict[str, Any] | None:
    if dataset is None:
        return training_run
    return {**(training_run or {}), "dataset": dataset}


def _version_row(version: AdapterVersion) -> dict[str, object]:
    row = msgspec.structs.asdict(version)
    row["training_run"] = None if version.training_run is None else msgspec.json.encode(version.training_run).decode()
    row["eval_results"] = msgspec.json.encode(version.eval_results).decode()
    return row


def _version(row: sa.Row) -> AdapterVersion:
    values = dict(row._mapping)
    values["training_run"] = None if values["training_run"] is None else msgspec.json.decode(values["training_run"])
    values["eval_results"] = msgspec.json.decode(values["eval_results"])
    return AdapterVersion(**values)
