"""Which gateway worker drives loop runs: exactly one at a time, and another takes over when it dies.

Embedded (SQLite): an exclusive ``flock`` on ``<home>/loop.lock``, released by the OS when the process ends.
Cluster (PostgreSQL): a session advisory lock on a connection held open, released when the pod's connection
drops. Any worker may *receive* alerts (they are decided in the database); only the leader *acts* on runs.
"""

from __future__ import annotations

import fcntl
import zlib
from pathlib import Path

import sqlalchemy as sa

_KEY = zlib.crc32(b"driftgate-loop-leader")


class Leadership:
    def __init__(self, engine: sa.Engine, home: Path) -> None:
        self._engine = engine
        self._home = home
        self._file = None
        self._conn: sa.Connection | None = None

    def held(self) -> bool:
        """True when this worker leads (acquiring it if free). Call from a worker thread."""
        if self._file is not None or self._conn is not None:
            return True
        if self._engine.dialect.name == "postgresql":
            conn = self._engine.connect()
            if conn.execute(sa.select(sa.func.pg_try_advisory_lock(_KEY))).scalar():
                self._conn = conn
                return True
            conn.close()
            return False
        handle = open(self._home / "loop.lock", "w")  # noqa: SIM115 - held for the worker's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
