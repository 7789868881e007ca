"""Loop runs and client feedback, in the gateway's state database (SQLite embedded, PostgreSQL in cluster mode).

A run is one alert's way through the loop (decision, job, gate, canary, outcome), kept as one JSON document
with its status beside it, so the timeline an operator reads is exactly what the controller wrote. Every
change to runs starts by bumping a counter row: the write lock it takes serialises gateway workers, so two
workers receiving the same alert cannot both start a run.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import msgspec
import sqlalchemy as sa

from gateway.loop.policy import LoopPolicy, PastRun, RunDecision, decide
from monitor.database import create_engine, ensure_schema, upsert_ignoring

SCHEMA_VERSION = 1
SCHEMA_COMPONENT = "loop"

Status = Literal[
    "skipped", "awaiting_approval", "queued", "training", "canary", "promoted", "rolled_back", "rejected", "failed"
]
ACTIVE: frozenset[str] = frozenset({"awaiting_approval", "queued", "training", "canary"})

metadata = sa.MetaData()
lock = sa.Table("loop_lock", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("n", sa.BigInteger))
runs = sa.Table(
    "loop_runs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("created", sa.Double, nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # JSON LoopRun
    sa.Index("ix_loop_runs_alias_created", "alias", "created"),
)
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("version", sa.Text),
    sa.Column("key_id", sa.String(128)),
    sa.Column("rating", sa.Integer),
    sa.Column("correction", sa.Text),  # redacted by the guards before it gets here
    sa.Column("created", sa.Double, nullable=False),
    sa.Column("used_by", sa.String(40)),  # the loop run whose dataset took it
    sa.Index("ix_feedback_alias_used", "alias", "used_by"),
    sa.Index("ix_feedback_request", "request_id"),
)


class Event(msgspec.Struct, frozen=True):
    at: float
    step: str  # alert, decision, approval, data, job, eval, register, canary, outcome
    detail: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class LoopRun(msgspec.Struct):
    id: str
    alias: str
    status: Status
    created: float
    fingerprint: str
    reason: str
    # The production version the alert was about, and what the run produced.
    production: str | None = None
    job_id: str | None = None
    candidate: str | None = None
    dataset: str | None = None
    canary_started: float | None = None
    # Drifted requests named by the alert: the prompts a teacher labels.
    request_ids: list[str] = msgspec.field(default_factory=list)
    timeline: list[Event] = msgspec.field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def note(self, step: str, detail: str, **data: Any) -> None:
        self.timeline.append(Event(time.time(), step, detail, data))


class Feedback(msgspec.Struct, frozen=True):
    id: str
    request_id: str
    alias: str
    version: str | None
    key_id: str | None
    rating: int | None
    correction: str | None
    created: float
    used_by: str | None = None


_run_decoder = msgspec.json.Decoder(LoopRun)


class LoopStore:
    """Synchronous: call from a worker thread."""

    def __init__(self, url: str, *, sqlite_busy_timeout_ms: int = 5_000) -> None:
        self.engine = create_engine(url, sqlite_busy_timeout_ms)
        ensure_schema(self.engine, SCHEMA_COMPONENT, SCHEMA_VERSION, metadata.sorted_tables)
        with self.engine.begin() as conn:
            conn.execute(upsert_ignoring(self.engine, lock, "id").values(id=1, n=0))

    def close(self) -> None:
        self.engine.dispose()

    # Runs.

    def admit(
        self,
        alias: str,
        fingerprint: str,
        policy: LoopPolicy,
        *,
        production: str | None,
        request_ids: list[str],
        alert: dict[str, Any],
        teacher_samples: int = 0,
        now: float | None = None,
    ) -> LoopRun:
        """Decide on a firing alert under the alias's policy and record the run, accepted or skipped."""
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            _lock(conn)
            history = [
                PastRun(run.id, run.created, run.status != "skipped", run.active, run.fingerprint)
                for run in _runs(conn, alias, since=now - 2 * 86_400 - policy.cooldown_s)
            ]
            samples = _unused_samples(conn, alias) + teacher_samples
            if production is None:
                decision = RunDecision(False, f"`{alias}` has no production version to retrain")
            else:
                decision = decide(policy, fingerprint, history, samples, now)
            status: Status = "skipped"
            if decision.accepted:
                status = "awaiting_approval" if policy.approval == "manual" else "queued"
            run = LoopRun(
                id=time.strftime("%Y%m%d-%H%M%S-", time.gmtime(now)) + uuid.uuid4().hex[:6],
                alias=alias,
                status=status,
                created=now,
                fingerprint=fingerprint,
                reason=decision.reason,
                production=production,
                request_ids=request_ids,
            )
            run.timeline.append(Event(now, "alert", f"drift alert for {production or alias}", alert))
            run.timeline.append(Event(now, "decision", decision.reason, {"accepted": decision.accepted}))
            conn.execute(sa.insert(runs).values(_run_row(run)))
            return run

    def save(self, run: LoopRun) -> None:
        with self.engine.begin() as conn:
            _lock(conn)
            conn.execute(sa.update(runs).where(runs.c.id == run.id).values(_run_row(run)))

    def get(self, run_id: str) -> LoopRun | None:
        with self.engine.connect() as conn:
            body = conn.execute(sa.select(runs.c.body).where(runs.c.id == run_id)).scalar()
        return None if body is None else _run_decoder.decode(body)

    def list(self, alias: str | None = None, limit: int = 100) -> list[LoopRun]:
        query = sa.select(runs.c.body).order_by(runs.c.created.desc()).limit(limit)
        if alias is not None:
            query = query.where(runs.c.alias == alias)
        with self.engine.connect() as conn:
            return [_run_decoder.decode(body) for body in conn.execute(query).scalars()]

    def active(self) -> list[LoopRun]:
        query = sa.select(runs.c.body).where(runs.c.status.in_(ACTIVE)).order_by(runs.c.created)
        with self.engine.connect() as conn:
            return [_run_decoder.decode(body) for body in conn.execute(query).scalars()]

    # Feedback.

    def add_feedback(
        self,
        request_id: str,
        alias: str,
        version: str | None,
        key_id: str | None,
        rating: int | None,
        correction: str | None,
    ) -> Feedback:
        item = Feedback(uuid.uuid4().hex, request_id, alias, version, key_id, rating, correction, time.time())
        with self.engine.begin() as conn:
            conn.execute(sa.insert(feedback).values(msgspec.structs.asdict(item)))
        return item

    def unused_feedback(self, alias: str) -> list[Feedback]:
        """Samples for the next dataset: corrections, and up-voted answers, not yet used by a run."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(feedback).where(_sample_rows(alias)).order_by(feedback.c.created))
            return [Feedback(**row._mapping) for row in rows]

    def unused_preferences(self, alias: str) -> list[Feedback]:
        """Every unused rating or correction: down-votes too, since a DPO pair needs a rejected answer."""
        rated = sa.or_(feedback.c.correction.is_not(None), feedback.c.rating.is_not(None))
        query = sa.select(feedback).where(feedback.c.alias == alias, feedback.c.used_by.is_(None), rated)
        with self.engine.connect() as conn:
            return [Feedback(**row._mapping) for row in conn.execute(query.order_by(feedback.c.created))]

    def mark_used(self, ids: list[str], run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(feedback).where(feedback.c.id.in_(ids)).values(used_by=run_id))

    def ratings(self, alias: str, since: float) -> dict[str, list[int]]:
        """Ratings given since ``since`` per version served."""
        query = sa.select(feedback.c.version, feedback.c.rating).where(
            feedback.c.alias == alias, feedback.c.created >= since, feedback.c.rating.is_not(None)
        )
        out: dict[str, list[int]] = {}
        with self.engine.connect() as conn:
            for version, rating in conn.execute(query):
                out.setdefault(version or "", []).append(rating)
        return out


def _lock(conn: sa.Connection) -> None:
    conn.execute(sa.update(lock).where(lock.c.id == 1).values(n=lock.c.n + 1))


def _runs(conn: sa.Connection, alias: str, since: float) -> list[LoopRun]:
    query = sa.select(runs.c.body).where(runs.c.alias == alias, runs.c.created >= since)
    found = [_run_decoder.decode(body) for body in conn.execute(query).scalars()]
    # Active runs count whatever their age: a canary may outlive the window above.
    query = sa.select(runs.c.body).where(runs.c.alias == alias, runs.c.status.in_(ACTIVE), runs.c.created < since)
    return found + [_run_decoder.decode(body) for body in conn.execute(query).scalars()]


def _sample_rows(alias: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        feedback.c.alias == alias,
        feedback.c.used_by.is_(None),
        sa.or_(feedback.c.correction.is_not(None), feedback.c.rating == 1),
    )


def _unused_samples(conn: sa.Connection, alias: str) -> int:
    query = sa.select(sa.func.count(sa.distinct(feedback.c.request_id))).where(_sample_rows(alias))
    return conn.execute(query).scalar_one()


def _run_row(run: LoopRun) -> dict[str, object]:
    body = msgspec.json.encode(run).decode()
    return {"id": run.id, "alias": run.alias, "status": run.status, "created": run.created, "body": body}
