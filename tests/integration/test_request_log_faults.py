"""The request log's store dies under traffic: requests keep being served and nothing acknowledged is lost.

A real PostgreSQL server (Debian's package, started here) behind a gateway serving real HTTP requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import ModelRoute
from guards import GuardsSettings
from monitor.request_log import RequestLogSettings
from monitor.request_log_store import RequestLogStore
from tests.conftest import running_gateway, settings_for
from tests.pg import PgCluster, running_cluster

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Mail me at jane.doe@example.com"}]}


@pytest.fixture
def postgres() -> Iterator[PgCluster]:
    """A cluster of its own: this test stops and restarts the server."""
    with running_cluster() as cluster:
        yield cluster


def log_counts(metrics_text: str) -> dict[str, float]:
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "driftgate_request_log_records_total"
    }


async def test_store_killed_mid_traffic(postgres: PgCluster, upstreams) -> None:
    upstream = await upstreams()
    url = postgres.create_database("gateway_log")
    config = RequestLogSettings(url=url, max_delay_s=0.05, retry_initial_s=0.05, retry_max_s=0.5)
    settings = settings_for(ModelRoute("m", [upstream.url]), request_log=config, guards=GuardsSettings())
    served: list[str] = []

    async def traffic(client, count: int) -> None:
        for _ in range(count):
            response = await client.post("/v1/chat/completions", json=CHAT)
            assert response.status_code == 200, response.text  # the log's trouble is never the client's
            served.append(response.headers["x-request-id"])

    async with running_gateway(settings) as client:
        # The counters are process-wide: other tests in this process may have logged requests before.
        before = log_counts((await client.get("/metrics")).text)
        await traffic(client, 30)
        await asyncio.to_thread(postgres.stop, "immediate")  # a crash: no checkpoint, connections cut
        await traffic(client, 40)
        await asyncio.to_thread(postgres.start)
        await traffic(client, 30)
        for _ in range(100):  # the writer retries with backoff until the server is back
            now = log_counts((await client.get("/metrics")).text)
            counts = {outcome: now.get(outcome, 0) - before.get(outcome, 0) for outcome in ("written", "dropped")}
            if counts["written"] + counts["dropped"] >= len(served):
                break
            await asyncio.sleep(0.2)

    store = RequestLogStore(url)
    stored = {record_id for record_id in served if store.get(record_id) is not None}
    assert len(served) == 100
    # Nothing dropped (the queue held the outage), nothing lost: every served request is in the log once.
    assert counts["dropped"] == 0
    assert counts["written"] == 100
    assert stored == set(served)
    assert store.count() == 100
    assert all("jane.doe" not in (store.get(record_id).prompt or "") for record_id in served[:5])
    store.close()
