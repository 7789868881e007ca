"""Shared fixtures: fake upstreams and an in-process gateway on a real socket."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from gateway.app import create_app
from gateway.config import HealthCheckSettings, ModelRoute, Settings, TimeoutSettings
from guards import GuardsSettings
from monitor.tracing import Tracing
from tests.fake_upstream import FakeUpstream
from tests.pg import PgCluster, running_cluster


def free_disk() -> str:
    """Free space where the suite writes (the checkout, the temp dir, podman's store). A full disk fails a test
    far from its cause, so a run's header and summary say how much there was."""
    places = {Path(__file__).parents[1], Path(tempfile.gettempdir()), Path("/var/lib/containers")}
    return ", ".join(
        f"{place} {shutil.disk_usage(place).free / 2**30:.1f} GiB" for place in sorted(places) if place.exists()
    )


def pytest_report_header() -> str:
    return f"free disk: {free_disk()}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(f"free disk at the end: {free_disk()}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that kill the shared vLLM server run after every test that needs it alive."""
    items.sort(key=lambda item: item.get_closest_marker("kills_vllm") is not None)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A real PostgreSQL server (Debian's package, see tests/pg.py); each test creates its own database in it."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh, empty database: a SQLite file in the test's directory, then one on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'driftgate.db'}"
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"test_{uuid.uuid4().hex[:12]}")


SHARED_MODELS = Path(__file__).resolve().parents[1] / ".driftgate" / "models"


def link_shared_models(home: Path) -> None:
    """Point ``<home>/models`` at the checkout's model folder, so exported guard and embedder models are built
    once per checkout (the injection classifier alone trains for about 18 s). The folder is made first: on a
    fresh clone the first test to run finds none, and a link to nothing makes every export under it fail.
    A home that already has its models is left as it is."""
    SHARED_MODELS.mkdir(parents=True, exist_ok=True)
    models = home / "models"
    if not models.exists() and not models.is_symlink():
        home.mkdir(parents=True, exist_ok=True)
        models.symlink_to(SHARED_MODELS)


def relay_started_workers(process: subprocess.Popen) -> set[str]:
    """Echo a ``driftgate serve`` process's stdout (pytest shows it on failure) and collect the workers granian
    reports started. Tests that stop the server wait for all of them first: a worker still starting when the
    signal comes is only killed after ``shutdown.grace_s`` (granian's handler misses a signal during startup)."""
    started: set[str] = set()

    def relay() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            if found := re.search(r"Started (worker-\d+)", line):
                started.add(found.group(1))

    threading.Thread(target=relay, daemon=True).start()
    return started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def upstreams() -> AsyncIterator[Callable[..., asyncio.Future]]:
    started: list[FakeUpstream] = []

    async def start(name: str = "fake") -> FakeUpstream:
        upstream = await FakeUpstream(name).start()
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        await upstream.stop()


@asynccontextmanager
async def running_gateway(
    settings: Settings, tracing: Tracing | None = None, port: int | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """Serve the real app with uvicorn on ``port`` (default: a free one) and yield a client for it."""
    port = port or free_port()
    app = create_app(settings, tracing)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            client.app = app  # type: ignore[attr-defined]  # tests reach the Gateway at client.app.state.gateway
            yield client
    finally:
        server.should_exit = True
        await task


def settings_for(*routes: ModelRoute, read_s: float = 5.0, health_interval_s: float = 0.2, **kwargs) -> Settings:
    """Settings for a test gateway; guards are off unless a test passes its own (proxy tests want pass-through).
    A ``home`` given shares the checkout's exported models."""
    if "home" in kwargs:
        link_shared_models(Path(kwargs["home"]))
    kwargs.setdefault("guards", GuardsSettings(enabled=False))
    kwargs.setdefault("request_log", None)
    return Settings(
        models=list(routes),
        timeouts=TimeoutSettings(connect_s=1.0, read_s=read_s),
        health=HealthCheckSettings(interval_s=health_interval_s, timeout_s=0.5),
        **kwargs,
    )
