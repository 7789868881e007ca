"""Images built from this repository and run with podman (runc, `default_ulimits = []`: see
deploy/docker/build-local.sh and docs/deploy.md). scripts/test-services.sh installs podman, runc and
debootstrap; the first build of a machine also makes the Debian base (~1 min) and fills pip's cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
TAG = os.environ.get("DRIFTGATE_IMAGE_TAG", "dev")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The compose stack test runs only when asked for (`-m compose_stack`): it does not fit CI's budget."""
    if "compose_stack" in (config.getoption("markexpr") or ""):
        return
    skipped = [item for item in items if item.get_closest_marker("compose_stack")]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [item for item in items if not item.get_closest_marker("compose_stack")]


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", "--runtime", "runc", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"podman {' '.join(args)}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


def build(*names: str) -> None:
    """deploy/docker/build-local.sh NAME...: cached layers make a rebuild of an unchanged tree seconds (minutes
    for the multi-GB images, whose layers are re-hashed). DRIFTGATE_REUSE_IMAGES=1 uses images already built
    (the operator's word that they are the tree's) and builds only the missing ones."""
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: run scripts/test-services.sh")
    if os.environ.get("DRIFTGATE_REUSE_IMAGES") == "1":
        names = tuple(n for n in names if podman("image", "exists", image(n), check=False).returncode)
        if not names:
            return
    done = subprocess.run(
        [str(REPO / "deploy" / "docker" / "build-local.sh"), *names],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "DRIFTGATE_IMAGE_TAG": TAG},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def image(name: str) -> str:
    return f"localhost/driftgate/{name}:{TAG}"


@pytest.fixture(scope="session")
def gateway_image() -> str:
    build("gateway")
    return f"localhost/driftgate/gateway:{TAG}"


@pytest.fixture
def pod() -> Iterator[Callable[..., str]]:
    """Makes a pod (one network namespace, its ports published on the host) and removes it afterwards."""
    made: list[str] = []

    def create(*publish: str) -> str:
        name = f"driftgate-test-{uuid.uuid4().hex[:8]}"
        podman("pod", "create", "--name", name, *(arg for port in publish for arg in ("-p", port)))
        made.append(name)
        return name

    yield create
    for name in made:
        podman("pod", "rm", "--force", "--time", "5", name, check=False)


def wait_for(url: str, timeout: float = 180, logs: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s\n{logs()}")
