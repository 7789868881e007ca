"""An append-only, hash-chained audit trail of admin actions and guard blocks.

Each entry's hash covers its content and the previous entry's hash, and a one-row head holds the last
sequence number and hash, updated in the same transaction as every append (the row lock also serialises
appends from several gateway workers). :func:`verify` recomputes the chain: an edited entry breaks its own
hash, a deleted one breaks the sequence or the next entry's link, a truncated tail disagrees with the head.
Someone who can rewrite the whole table and the head can forge a consistent chain; exporting the head
hash elsewhere from time to time closes that gap and is left to the operator.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import msgspec
import sqlalchemy as sa

from monitor.database import create_engine, ensure_schema, upsert_ignoring

SCHEMA_COMPONENT = "audit"
SCHEMA_VERSION = 1
GENESIS = "0" * 64

metadata = sa.MetaData()
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("time", sa.Double, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # canonical JSON, never raw prompt text or key secrets
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)


class AuditEntry(msgspec.Struct, frozen=True):
    seq: int
    time: float
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditProblem(msgspec.Struct, frozen=True):
    seq: int
    problem: str


def _canonical(details: dict[str, Any]) -> str:
    return msgspec.json.encode(details, order="sorted").decode()


def entry_hash(seq: int, when: float, actor: str, action: str, subject: str, details: str, prev_hash: str) -> str:
    material = msgspec.json.encode([seq, repr(when), actor, action, subject, details, prev_hash])
    return hashlib.sha256(material).hexdigest()


class AuditLog:
    """Appends and checks; every call is synchronous (run it off the event loop)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        ensure_schema(self.engine, SCHEMA_COMPONENT, SCHEMA_VERSION, [audit_log, audit_head])
        with self.engine.begin() as conn:
            conn.execute(upsert_ignoring(self.engine, audit_head, "id").values(id=1, seq=0, hash=GENESIS))

    def close(self) -> None:
        self.engine.dispose()

    def append(self, actor: str, action: str, subject: str, details: dict[str, Any] | None = None) -> AuditEntry:
        details_json = _canonical(details or {})
        with self.engine.begin() as conn:
            head = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1).with_for_update()).one()
            if self.engine.dialect.name == "sqlite":
                # SQLite has no row locks: take the database write lock before reading the head.
                conn.execute(sa.update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq))
                head = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).one()
            seq, now = head.seq + 1, time.time()
            digest = entry_hash(seq, now, actor, action, subject, details_json, head.hash)
            conn.execute(
                sa.insert(audit_log).values(
                    seq=seq,
                    time=now,
                    actor=actor,
                    action=action,
                    subject=subject,
                    details=details_json,
                    prev_hash=head.hash,
                    hash=digest,
                )  # fmt: skip
            )
            conn.execute(sa.update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=digest))
        return AuditEntry(seq, now, actor, action, subject, details or {}, head.hash, digest)

    def entries(self, since: int = 0) -> list[AuditEntry]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(audit_log).where(audit_log.c.seq > since).order_by(audit_log.c.seq))
            return [
                AuditEntry(
                    r.seq, r.time, r.actor, r.action, r.subject, msgspec.json.decode(r.details), r.prev_hash, r.hash
                )
                for r in rows
            ]

    def verify(self) -> list[AuditProblem]:
        """Every break in the chain; an empty list means the trail is intact."""
        problems: list[AuditProblem] = []
        expected_prev, expected_seq = GENESIS, 1
        with self.engine.connect() as conn:
            head = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).one()
            for row in conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)):
                if row.seq != expected_seq:
                    problems.append(AuditProblem(expected_seq, f"entries {expected_seq}..{row.seq - 1} are missing"))
                if row.prev_hash != expected_prev:
                    problems.append(AuditProblem(row.seq, "does not link to the entry before it"))
                recomputed = entry_hash(
                    row.seq, row.time, row.actor, row.action, row.subject, row.details, row.prev_hash
                )
                if recomputed != row.hash:
                    problems.append(AuditProblem(row.seq, "was edited: its content does not match its hash"))
                expected_prev, expected_seq = row.hash, row.seq + 1
        if head.seq != expected_seq - 1 or head.hash != expected_prev:
            problems.append(
                AuditProblem(head.seq, f"the trail ends at {expected_seq - 1} but the head says {head.seq}")
            )
        return problems
