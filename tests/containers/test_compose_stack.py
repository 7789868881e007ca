"""The compose stack (deploy/compose/docker-compose.yml) up with podman-compose, every image built from this
repository or from Debian's packages (POSTGRES_IMAGE, PROMETHEUS_IMAGE, ALERTMANAGER_IMAGE; the file's
defaults are the official images): a chat completion through the gateway container answered by the vLLM
container (CPU build, SmolLM2-135M baked in), Prometheus scraping the gateway with its token, Alertmanager
delivering an EmbeddingDrift alert to the gateway's /admin/alerts with the admin key, and `down` leaving
no volume with a secret in it. Slow: vLLM starts in 1-3 minutes; `-m compose_stack` selects it."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import free_port
from tests.containers.conftest import REPO, TAG, build, podman, wait_for

# Building (cached layers of multi-GB images are re-hashed: minutes) and starting vLLM take most of it.
pytestmark = [pytest.mark.containers, pytest.mark.compose_stack, pytest.mark.timeout(3600)]

COMPOSE = REPO / "deploy" / "compose" / "docker-compose.yml"
IMAGES = ("gateway", "vllm-cpu", "postgres", "prometheus", "alertmanager")


class Stack:
    def __init__(self, project: str, env: dict[str, str], ports: dict[str, int], admin_key: str) -> None:
        self.project, self.env, self.ports, self.admin_key = project, env, ports, admin_key

    def compose(self, *args: str, timeout: float = 600) -> str:
        command = [sys.executable, "-m", "podman_compose", "-f", str(COMPOSE), "-p", self.project, *args]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=self.env, cwd=COMPOSE.parent
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        return done.stdout

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def logs(self, service: str) -> str:
        done = podman("logs", "--tail", "60", f"{self.project}_{service}_1", check=False)
        return done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: run scripts/test-services.sh")
    build(*IMAGES)
    secret_dir = tmp_path_factory.mktemp("secrets")
    admin_key = "dg-" + secrets.token_urlsafe(24)
    for name, value in {"admin-key": admin_key, "metrics-token": "dg-" + secrets.token_urlsafe(24),
                        "postgres-password": secrets.token_urlsafe(16)}.items():  # fmt: skip
        (secret_dir / name).write_text(value + "\n")
        (secret_dir / name).chmod(0o644)
    ports = {"gateway": free_port(), "prometheus": free_port(), "alertmanager": free_port()}
    env = {
        **os.environ,
        "GATEWAY_IMAGE": f"localhost/driftgate/gateway:{TAG}",
        "VLLM_IMAGE": f"localhost/driftgate/vllm-cpu:{TAG}",
        "POSTGRES_IMAGE": f"localhost/driftgate/postgres:{TAG}",
        "PROMETHEUS_IMAGE": f"localhost/driftgate/prometheus:{TAG}",
        "ALERTMANAGER_IMAGE": f"localhost/driftgate/alertmanager:{TAG}",
        "DRIFTGATE_ADMIN_KEY_PATH": str(secret_dir / "admin-key"),
        "DRIFTGATE_METRICS_TOKEN_PATH": str(secret_dir / "metrics-token"),
        "POSTGRES_PASSWORD_PATH": str(secret_dir / "postgres-password"),
        "POSTGRES_PASSWORD": (secret_dir / "postgres-password").read_text().strip(),
        "GATEWAY_PORT": str(ports["gateway"]),
        "PROMETHEUS_PORT": str(ports["prometheus"]),
        "ALERTMANAGER_PORT": str(ports["alertmanager"]),
    }
    stack = Stack(f"dgtest{uuid.uuid4().hex[:6]}", env, ports, admin_key)
    try:
        stack.compose("up", "-d", "--no-build")
        wait_for(f"{stack.url('gateway')}/readyz", timeout=600, logs=lambda: stack.logs("gateway") + stack.logs("vllm"))
        yield stack
    finally:
        stack.compose("down", "--volumes", "--timeout", "10", timeout=300)


def test_a_chat_completion_goes_through_the_gateway_to_vllm(stack: Stack) -> None:
    headers = {"authorization": f"Bearer {stack.admin_key}"}
    assert httpx.get(f"{stack.url('gateway')}/v1/models").status_code == 401
    body = {"model": "SmolLM2-135M-Instruct", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
    deadline = time.monotonic() + 300
    while True:  # the gateway is ready before its health check has seen vLLM up
        response = httpx.post(f"{stack.url('gateway')}/v1/chat/completions", json=body, headers=headers, timeout=120)
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert response.status_code == 200, response.text + stack.logs("vllm")
    answer = response.json()
    assert answer["choices"][0]["message"]["content"] and answer["usage"]["completion_tokens"] > 0


def test_prometheus_scrapes_the_gateway_with_its_token(stack: Stack) -> None:
    deadline = time.monotonic() + 120
    while True:
        result = httpx.get(f"{stack.url('prometheus')}/api/v1/query", params={"query": 'up{job="driftgate"}'}).json()
        values = [sample["value"][1] for sample in result["data"]["result"]]
        if values == ["1"] or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert values == ["1"], result


def test_alertmanager_delivers_a_drift_alert_to_the_gateway(stack: Stack) -> None:
    alert = [{"labels": {"alertname": "EmbeddingDrift", "alias": "support", "severity": "warning"},
              "annotations": {"summary": "compose stack test"}}]  # fmt: skip
    assert httpx.post(f"{stack.url('alertmanager')}/api/v2/alerts", json=alert).status_code == 200
    headers = {"authorization": f"Bearer {stack.admin_key}"}
    deadline = time.monotonic() + 120
    while True:  # group_wait is 10 s
        runs = httpx.get(f"{stack.url('gateway')}/admin/loop", params={"alias": "support"}, headers=headers)
        assert runs.status_code == 200, runs.text
        if runs.json()["runs"] or time.monotonic() > deadline:
            break
        time.sleep(2)
    # The loop controller received it (through Alertmanager, with the admin key) and decided: no adapter
    # `support` is in production here, so the run is recorded as skipped with that reason.
    (run,) = runs.json()["runs"]
    assert run["status"] == "skipped" and "no production version" in run["reason"], run
