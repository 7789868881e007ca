"""The fleet's drift windows in the state database: every replica appends the prompts it embedded, and the
replica that finds a window full claims it, scores it and folds its verdict in, once for the whole fleet.

Per-process windows made each of N replicas see 1/N of an alias's traffic: windows took N times as long to
fill, and the detector's sensitivity changed whenever a pod was added. Here the windows, their verdicts and
the confirmation state live in three tables shared by every replica (SQLite for one machine, PostgreSQL for
a fleet), and one code path serves both.

Every write transaction starts by touching the alias-and-version's ``drift_state`` row: on PostgreSQL that
takes the row's lock, on SQLite the database's write lock, so the claims and verdicts of one alias are
serialised across the fleet by one statement that means the same on both. Scoring runs outside it. A window
claimed by a replica that died before its verdict is claimed again after ``claim_timeout_s``. Prompts are
assigned to windows when claimed (not by id range: ids are not in commit order on PostgreSQL), and claimed
prompts are deleted once no window that is still needed reads them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import NamedTuple

import msgspec
import numpy as np
import sqlalchemy as sa

from monitor.database import ensure_schema, upsert_ignoring
from monitor.drift_types import DriftEvent, DriftSettings, Hysteresis, WindowResult

SCHEMA_COMPONENT = "drift_board"
SCHEMA_VERSION = 1
# Windows kept after their verdict (the newest is what a report compares; those with an event are kept).
KEPT_WINDOWS = 50

metadata = sa.MetaData()
_row_id = sa.BigInteger().with_variant(sa.Integer, "sqlite")  # SQLite autoincrements INTEGER keys only

drift_prompts = sa.Table(
    "drift_prompts",
    metadata,
    sa.Column("id", _row_id, primary_key=True, autoincrement=True),
    sa.Column("alias", sa.String(256), nullable=False),
    sa.Column("version", sa.String(256), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("embedding", sa.LargeBinary, nullable=False),  # float32, row-major
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("claimed", sa.Boolean, nullable=False),
    sa.Index("drift_prompts_pending", "alias", "version", "claimed", "id"),
)
drift_windows = sa.Table(
    "drift_windows",
    metadata,
    sa.Column("alias", sa.String(256), primary_key=True),
    sa.Column("version", sa.String(256), primary_key=True),
    sa.Column("sequence", sa.Integer, primary_key=True),
    sa.Column("prompt_ids", sa.Text, nullable=False),  # JSON list of drift_prompts ids, oldest first
    sa.Column("opened_at", sa.Double, nullable=False),
    sa.Column("closed_at", sa.Double, nullable=False),
    sa.Column("claimed_by", sa.String(64), nullable=False),
    sa.Column("claimed_at", sa.Double, nullable=False),
    sa.Column("result", sa.Text),  # JSON WindowResult, once scored
    sa.Column("event", sa.Text),  # JSON DriftEvent, when this window confirmed or cleared drift
    sa.Column("applied_at", sa.Double),
)
drift_state = sa.Table(
    "drift_state",
    metadata,
    sa.Column("alias", sa.String(256), primary_key=True),
    sa.Column("version", sa.String(256), primary_key=True),
    sa.Column("next_sequence", sa.Integer, nullable=False),
    sa.Column("applied_through", sa.Integer, nullable=False),  # the last window folded in; -1 for none
    sa.Column("opened_at", sa.Double, nullable=False),  # when the window now filling opened
    sa.Column("touched", sa.Double, nullable=False),
    sa.Column("hysteresis", sa.Text, nullable=False),  # JSON Hysteresis
)


class Entry(NamedTuple):
    alias: str
    version: str
    request_id: str
    embedding: np.ndarray


class Claimed(NamedTuple):
    """A window this replica took to score: its prompts' request ids and embeddings, oldest first."""

    alias: str
    version: str
    sequence: int
    request_ids: list[str]
    embeddings: np.ndarray
    opened_at: float
    closed_at: float


class Summary(NamedTuple):
    hysteresis: Hysteresis
    pending: int  # prompts not yet in any window


Fold = Callable[[Hysteresis, WindowResult], tuple[Hysteresis, DriftEvent | None]]
_ids = msgspec.json.Decoder(list[int])
_result = msgspec.json.Decoder(WindowResult)
_event = msgspec.json.Decoder(DriftEvent)
_hysteresis = msgspec.json.Decoder(Hysteresis)
_EMPTY = msgspec.json.encode(Hysteresis()).decode()


class DriftBoard:
    """The shared windows; synchronous (call it from a thread)."""

    def __init__(
        self,
        engine: sa.Engine,
        settings: DriftSettings,
        clock: Callable[[], float] = time.time,
        claim_timeout_s: float = 60.0,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.claim_timeout_s = claim_timeout_s
        self.holder = uuid.uuid4().hex
        ensure_schema(engine, SCHEMA_COMPONENT, SCHEMA_VERSION, metadata.sorted_tables)

    def append(self, entries: Sequence[Entry]) -> list[tuple[str, str]]:
        """Record embedded prompts in their alias-and-version's window now filling; the (alias, version) pairs
        that now hold enough unclaimed prompts to close a window (``claim`` takes the lock and checks again).

        The check is a plain read in the insert's transaction, so the common call takes no lock: writers
        of one alias only queue on its state row when a window is there to claim."""
        if not entries:
            return []
        now = self.clock()
        rows = [
            {
                "alias": e.alias,
                "version": e.version,
                "request_id": e.request_id,
                "embedding": np.ascontiguousarray(e.embedding, dtype=np.float32).tobytes(),
                "at": now,
                "claimed": False,
            }
            for e in entries
        ]
        step = self.settings.step or self.settings.window_size
        with self.engine.begin() as conn:
            conn.execute(sa.insert(drift_prompts), rows)
            keys = dict.fromkeys((e.alias, e.version) for e in entries)
            for key in keys:
                self._ensure_state(conn, *key, now)
            return [key for key in keys if len(self._pending(conn, *key, step)) >= step]

    def claim(self, alias: str, version: str, *, stale: bool = False, most: int = 16) -> list[Claimed]:
        """Windows ready to score: every full one (up to ``most``), with ``stale`` also one older than
        ``max_window_age_s`` that holds ``min_window_size`` prompts, and any a dead replica claimed and left."""
        settings = self.settings
        with self.engine.begin() as conn:
            now = self.clock()
            state = self._lock(conn, alias, version, now)
            sequences = self._abandoned(conn, alias, version, now)
            next_sequence, opened_at = state.next_sequence, state.opened_at
            tail = self._tail(conn, alias, version, next_sequence)
            while len(sequences) < most:
                need = settings.window_size - len(tail)
                pending = self._pending(conn, alias, version, need)
                old = now - opened_at >= settings.max_window_age_s
                stale_enough = stale and old and pending and len(tail) + len(pending) >= settings.min_window_size
                if len(pending) < need and not stale_enough:
                    break
                ids = tail + pending
                conn.execute(sa.update(drift_prompts).where(drift_prompts.c.id.in_(pending)).values(claimed=True))
                conn.execute(
                    sa.insert(drift_windows).values(
                        alias=alias,
                        version=version,
                        sequence=next_sequence,
                        prompt_ids=msgspec.json.encode(ids).decode(),
                        opened_at=opened_at,
                        closed_at=now,
                        claimed_by=self.holder,
                        claimed_at=now,
                    )
                )
                sequences.append(next_sequence)
                next_sequence, opened_at = next_sequence + 1, now
                keep = settings.window_size - (settings.step or settings.window_size)
                tail = ids[-keep:] if keep else []
                if stale_enough and len(pending) < need:
                    break
            conn.execute(
                sa.update(drift_state)
                .where(drift_state.c.alias == alias, drift_state.c.version == version)
                .values(next_sequence=next_sequence, opened_at=opened_at)
            )
            return [self._load(conn, alias, version, sequence) for sequence in sequences]

    def record(self, result: WindowResult, fold: Fold) -> list[DriftEvent]:
        """Store a scored window's result and fold every scored window not yet folded, in order, into the
        alias-and-version's state; the events that caused (only the replica that folds them sees them)."""
        alias, version = result.alias, result.version
        with self.engine.begin() as conn:
            now = self.clock()
            state = self._lock(conn, alias, version, now)
            key = (drift_windows.c.alias == alias, drift_windows.c.version == version)
            conn.execute(
                sa.update(drift_windows)
                .where(*key, drift_windows.c.sequence == result.sequence, drift_windows.c.result.is_(None))
                .values(result=msgspec.json.encode(result).decode())
            )
            hysteresis, applied, events = _hysteresis.decode(state.hysteresis), state.applied_through, []
            scored = conn.execute(
                sa.select(drift_windows.c.sequence, drift_windows.c.result)
                .where(*key, drift_windows.c.sequence > applied)
                .order_by(drift_windows.c.sequence)
            ).all()
            for sequence, stored in scored:
                if sequence != applied + 1 or stored is None:
                    break  # an earlier window is still being scored: its verdict comes first
                hysteresis, event = fold(hysteresis, _result.decode(stored))
                encoded = msgspec.json.encode(event).decode() if event is not None else None
                conn.execute(
                    sa.update(drift_windows)
                    .where(*key, drift_windows.c.sequence == sequence)
                    .values(applied_at=now, event=encoded)
                )
                if event is not None:
                    events.append(event)
                applied = sequence
            conn.execute(
                sa.update(drift_state)
                .where(drift_state.c.alias == alias, drift_state.c.version == version)
                .values(applied_through=applied, hysteresis=msgspec.json.encode(hysteresis).decode())
            )
            self._prune(conn, alias, version, applied)
        return events

    def summary(self, alias: str, version: str) -> Summary:
        with self.engine.connect() as conn:
            stored = conn.execute(
                sa.select(drift_state.c.hysteresis).where(
                    drift_state.c.alias == alias, drift_state.c.version == version
                )
            ).scalar()
            pending = conn.execute(
                sa.select(sa.func.count()).where(
                    drift_prompts.c.alias == alias, drift_prompts.c.version == version, ~drift_prompts.c.claimed
                )
            ).scalar_one()
        return Summary(_hysteresis.decode(stored) if stored else Hysteresis(), pending)

    def events(self, watched: Sequence[tuple[str, str]], limit: int = 100) -> list[DriftEvent]:
        """The newest confirmations and clearances of the watched alias-and-versions, newest last."""
        if not watched:
            return []
        keys = sa.tuple_(drift_windows.c.alias, drift_windows.c.version).in_(list(watched))
        with self.engine.connect() as conn:
            stored = conn.execute(
                sa.select(drift_windows.c.event)
                .where(keys, drift_windows.c.event.is_not(None))
                .order_by(drift_windows.c.applied_at.desc())
                .limit(limit)
            ).scalars()
            return [_event.decode(event) for event in reversed(list(stored))]

    def last_window(self, alias: str, version: str) -> Claimed | None:
        """The newest closed window: what a report for a person compares with the reference."""
        with self.engine.connect() as conn:
            sequence = conn.execute(
                sa.select(sa.func.max(drift_windows.c.sequence)).where(
                    drift_windows.c.alias == alias, drift_windows.c.version == version
                )
            ).scalar()
            return None if sequence is None else self._load(conn, alias, version, sequence)

    def forget(self, alias: str, keep_version: str) -> None:
        """Drop the windows of ``alias``'s other versions (a promotion judges the new one from a clean state)."""
        with self.engine.begin() as conn:
            for table in (drift_prompts, drift_windows, drift_state):
                conn.execute(sa.delete(table).where(table.c.alias == alias, table.c.version != keep_version))

    def _ensure_state(self, conn: sa.Connection, alias: str, version: str, now: float) -> None:
        """The alias-and-version's state row, made if missing (its first window opens now); takes no lock on
        a row already there."""
        values = {"alias": alias, "version": version, "next_sequence": 0, "applied_through": -1}
        conn.execute(
            upsert_ignoring(self.engine, drift_state, ["alias", "version"]).values(
                **values, opened_at=now, touched=now, hysteresis=_EMPTY
            )
        )

    def _lock(self, conn: sa.Connection, alias: str, version: str, now: float) -> sa.Row:
        """The alias-and-version's state row, made if missing and locked for this transaction (see above)."""
        self._ensure_state(conn, alias, version, now)
        key = (drift_state.c.alias == alias, drift_state.c.version == version)
        conn.execute(sa.update(drift_state).where(*key).values(touched=now))
        return conn.execute(sa.select(drift_state).where(*key)).one()

    def _abandoned(self, conn: sa.Connection, alias: str, version: str, now: float) -> list[int]:
        """Windows claimed more than ``claim_timeout_s`` ago and never scored, now claimed by this replica."""
        where = (
            drift_windows.c.alias == alias,
            drift_windows.c.version == version,
            drift_windows.c.result.is_(None),
            drift_windows.c.claimed_at < now - self.claim_timeout_s,
        )
        sequences = list(conn.execute(sa.select(drift_windows.c.sequence).where(*where)).scalars())
        if sequences:
            conn.execute(sa.update(drift_windows).where(*where).values(claimed_by=self.holder, claimed_at=now))
        return sequences

    def _tail(self, conn: sa.Connection, alias: str, version: str, next_sequence: int) -> list[int]:
        """The prompts the next window shares with the last one (windows overlap when ``step`` is set)."""
        keep = self.settings.window_size - (self.settings.step or self.settings.window_size)
        if not keep or next_sequence == 0:
            return []
        stored = conn.execute(
            sa.select(drift_windows.c.prompt_ids).where(
                drift_windows.c.alias == alias,
                drift_windows.c.version == version,
                drift_windows.c.sequence == next_sequence - 1,
            )
        ).scalar()
        return _ids.decode(stored)[-keep:] if stored else []

    def _pending(self, conn: sa.Connection, alias: str, version: str, most: int) -> list[int]:
        return list(
            conn.execute(
                sa.select(drift_prompts.c.id)
                .where(drift_prompts.c.alias == alias, drift_prompts.c.version == version, ~drift_prompts.c.claimed)
                .order_by(drift_prompts.c.id)
                .limit(most)
            ).scalars()
        )

    def _load(self, conn: sa.Connection, alias: str, version: str, sequence: int) -> Claimed:
        window = conn.execute(
            sa.select(drift_windows).where(
                drift_windows.c.alias == alias, drift_windows.c.version == version, drift_windows.c.sequence == sequence
            )
        ).one()
        ids = _ids.decode(window.prompt_ids)
        rows = {
            row.id: row
            for row in conn.execute(
                sa.select(drift_prompts.c.id, drift_prompts.c.request_id, drift_prompts.c.embedding).where(
                    drift_prompts.c.id.in_(ids)
                )
            )
        }
        found = [rows[i] for i in ids if i in rows]
        vectors = [np.frombuffer(row.embedding, dtype=np.float32) for row in found]
        embeddings = np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
        return Claimed(
            alias, version, sequence, [row.request_id for row in found], embeddings, window.opened_at, window.closed_at
        )

    def _prune(self, conn: sa.Connection, alias: str, version: str, applied: int) -> None:
        """Delete the prompts no needed window reads (the newest folded one and those not yet folded are
        needed) and old windows without an event."""
        key = (drift_windows.c.alias == alias, drift_windows.c.version == version)
        needed = conn.execute(
            sa.select(drift_windows.c.prompt_ids).where(*key, drift_windows.c.sequence >= applied)
        ).scalars()
        lowest = min((min(_ids.decode(ids), default=0) for ids in needed), default=None)
        if lowest is not None:
            conn.execute(
                sa.delete(drift_prompts).where(
                    drift_prompts.c.alias == alias,
                    drift_prompts.c.version == version,
                    drift_prompts.c.claimed,
                    drift_prompts.c.id < lowest,
                )
            )
        conn.execute(
            sa.delete(drift_windows).where(
                *key, drift_windows.c.sequence < applied - KEPT_WINDOWS, drift_windows.c.event.is_(None)
            )
        )
