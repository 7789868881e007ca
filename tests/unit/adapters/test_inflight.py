"""The shared in-flight board on real SQLite and a real PostgreSQL server: what other workers count."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway.adapters.inflight import InflightBoard
from monitor.database import create_engine


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    opened = create_engine(db_url)
    yield opened
    opened.dispose()


def test_each_worker_sees_the_others_requests_not_its_own(engine: sa.Engine) -> None:
    one, two = InflightBoard(engine, stale_s=20), InflightBoard(engine, stale_s=20)
    assert one.exchange({"support@1": 2, "support@2": 0}, now=100) == set()
    assert two.exchange({"support@3": 1}, now=101) == {"support@1"}  # a zero count is not published
    assert one.exchange({"support@2": 1}, now=102) == {"support@3"}  # one's earlier rows are replaced
    assert two.exchange({}, now=103) == {"support@2"}
    assert one.exchange({}, now=104) == set()


def test_a_dead_workers_rows_stop_counting_and_a_clean_exit_withdraws_at_once(engine: sa.Engine) -> None:
    dead, clean, alive = (InflightBoard(engine, stale_s=20) for _ in range(3))
    dead.exchange({"support@1": 1}, now=100)
    clean.exchange({"support@2": 1}, now=100)
    clean.withdraw()
    assert alive.exchange({}, now=119) == {"support@1"}
    assert alive.exchange({}, now=121) == set()  # 21 s without a publication: that worker is gone
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM adapter_inflight")).scalar_one() == 0
