"""Session fixtures for the monitor tests. ``pg_cluster`` is a real PostgreSQL server (see tests/pg.py) for the
request-log tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg import PgCluster, PgUnavailable, ensure_bin_dir


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A real PostgreSQL server for the request-log tests; each test creates its own database in it."""
    try:
        cluster = PgCluster(ensure_bin_dir())
    except PgUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    cluster.start()
    yield cluster
    cluster.destroy()
