"""The compose stack (deploy/compose/docker-compose.yml) up with podman-compose, every image built from this
repository or from Debian's packages (POSTGRES_IMAGE, PROMETHEUS_IMAGE, ALERTMANAGER_IMAGE; the file's
defaults are the official images), with tests/containers/compose.test.yml over it (the loop's job tiny):

* a chat completion through the gateway container answered by the vLLM container (CPU build, SmolLM2-135M);
* Prometheus (container) scraping the gateway with its token (`up == 1`), its EmbeddingDrift rule loaded and
  Alertmanager (container) as its alert target;
* the trainer container (`driftgate train worker`) running a job queued through `POST /admin/training/jobs`:
  the first version of an adapter, registered and promoted; then an EmbeddingDrift alert handed to
  Alertmanager reaching the gateway's /admin/alerts with the admin key and starting a loop run whose
  training job the trainer container runs;
* `down` leaving no volume with a secret in clear text, `down --volumes` leaving no volume.

Slow (vLLM starts in 1-3 minutes, two CPU training jobs): `-m compose_stack` selects it."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.containers.conftest import REPO, TAG, build, podman, wait_for

pytestmark = [pytest.mark.containers, pytest.mark.compose_stack, pytest.mark.timeout(3600)]

COMPOSE = REPO / "deploy" / "compose" / "docker-compose.yml"
OVERRIDE = Path(__file__).with_name("compose.test.yml")
IMAGES = ("gateway", "trainer", "vllm-cpu", "postgres", "prometheus", "alertmanager")
MODEL = "SmolLM2-135M-Instruct"
SHARED = "/var/lib/driftgate/shared"
ALIAS = "support"
JOB_ENDED = ("succeeded", "failed", "cancelled")
RUN_ENDED = ("canary", "promoted", "rolled_back", "rejected", "failed", "skipped")
SUPPORT = [
    "How do I reset my password?",
    "My invoice shows a double charge, what now?",
    "Where can I download last month's receipt?",
    "The app logs me out every few minutes.",
    "How do I add a second user to my account?",
    "Can I change the email address on my account?",
    "Why was my card declined at checkout?",
    "How do I cancel my subscription?",
    "The export button does nothing in Firefox.",
    "How long does a refund take?",
    "Where do I find my API token?",
    "Can I move my plan to yearly billing?",
    "My two-factor codes are not accepted.",
    "How do I delete my account and data?",
    "The dashboard shows no data since Monday.",
    "Can I get an invoice with my company's VAT number?",
]
TRAVEL = [
    "What should I pack for a weekend in Lisbon?",
    "Is the train from Milan to Zurich scenic?",
    "Which museums in Madrid open on Mondays?",
    "How early should I get to the airport in Oslo?",
    "What is a good day trip from Kyoto?",
    "Do I need a visa for a week in Morocco?",
]


class Stack:
    def __init__(self, project: str, env: dict[str, str], ports: dict[str, int], keys: dict[str, str]) -> None:
        self.project, self.env, self.ports, self.keys = project, env, ports, keys
        self.headers = {"authorization": f"Bearer {keys['admin-key']}"}

    def compose(self, *args: str, timeout: float = 600) -> str:
        files = ("-f", str(COMPOSE), "-f", str(OVERRIDE))
        command = [sys.executable, "-m", "podman_compose", *files, "-p", self.project, *args]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=self.env, cwd=COMPOSE.parent
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        return done.stdout

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def logs(self, service: str, tail: int = 60) -> str:
        done = podman("logs", "--tail", str(tail), self.container(service), check=False)
        return done.stdout[-4000:] + done.stderr[-4000:]

    def exec(self, service: str, script: str, stdin: str = "") -> str:
        """A shell command inside a running service (as its image's user, uid 10001)."""
        done = subprocess.run(
            ["podman", "--runtime", "runc", "exec", "-i", self.container(service), "sh", "-c", script],
            input=stdin, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def admin(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return httpx.request(method, f"{self.url('gateway')}{path}", headers=self.headers, timeout=120, **kwargs)

    def volumes(self) -> list[str]:
        names = podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
        return [name for name in names if name.startswith(f"{self.project}_")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: run scripts/test-services.sh")
    build(*IMAGES)
    secret_dir = tmp_path_factory.mktemp("secrets")
    keys = {
        "admin-key": "dg-" + secrets.token_urlsafe(24),
        "metrics-token": "dg-" + secrets.token_urlsafe(24),
        "postgres-password": secrets.token_urlsafe(16),
    }
    for name, value in keys.items():
        (secret_dir / name).write_text(value + "\n")
        (secret_dir / name).chmod(0o644)
    ports = {"gateway": free_port(), "prometheus": free_port(), "alertmanager": free_port()}
    env = {
        **os.environ,
        "GATEWAY_IMAGE": f"localhost/driftgate/gateway:{TAG}",
        "TRAINER_IMAGE": f"localhost/driftgate/trainer:{TAG}",
        "VLLM_IMAGE": f"localhost/driftgate/vllm-cpu:{TAG}",
        "POSTGRES_IMAGE": f"localhost/driftgate/postgres:{TAG}",
        "PROMETHEUS_IMAGE": f"localhost/driftgate/prometheus:{TAG}",
        "ALERTMANAGER_IMAGE": f"localhost/driftgate/alertmanager:{TAG}",
        "DRIFTGATE_ADMIN_KEY_PATH": str(secret_dir / "admin-key"),
        "DRIFTGATE_METRICS_TOKEN_PATH": str(secret_dir / "metrics-token"),
        "POSTGRES_PASSWORD_PATH": str(secret_dir / "postgres-password"),
        "POSTGRES_PASSWORD": keys["postgres-password"],
        "GATEWAY_PORT": str(ports["gateway"]),
        "PROMETHEUS_PORT": str(ports["prometheus"]),
        "ALERTMANAGER_PORT": str(ports["alertmanager"]),
    }
    stack = Stack(f"dgtest{uuid.uuid4().hex[:6]}", env, ports, keys)
    try:
        stack.compose("up", "-d", "--no-build")
        wait_for(f"{stack.url('gateway')}/readyz", timeout=600, logs=lambda: stack.logs("gateway") + stack.logs("vllm"))
        yield stack
    finally:
        stack.compose("down", "--volumes", "--timeout", "10", timeout=300)
        assert stack.volumes() == []


def test_a_chat_completion_goes_through_the_gateway_to_vllm(stack: Stack) -> None:
    assert httpx.get(f"{stack.url('gateway')}/v1/models").status_code == 401
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
    response = chat(stack, body)
    answer = response.json()
    assert answer["choices"][0]["message"]["content"] and answer["usage"]["completion_tokens"] > 0
    assert answer["system_fingerprint"].startswith("vllm"), answer  # vLLM's answer, passed through


def test_prometheus_scrapes_the_gateway_with_its_token_and_alerts_through_alertmanager(stack: Stack) -> None:
    prometheus = stack.url("prometheus")
    deadline = time.monotonic() + 120
    while True:
        result = httpx.get(f"{prometheus}/api/v1/query", params={"query": 'up{job="driftgate"}'}).json()
        values = [sample["value"][1] for sample in result["data"]["result"]]
        if values == ["1"] or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert values == ["1"], result
    rules = httpx.get(f"{prometheus}/api/v1/rules").json()["data"]["groups"]
    assert "EmbeddingDrift" in {rule["name"] for group in rules for rule in group["rules"]}
    targets = httpx.get(f"{prometheus}/api/v1/alertmanagers").json()["data"]["activeAlertmanagers"]
    assert [target["url"] for target in targets] == ["http://alertmanager:9093/api/v2/alerts"], targets


def test_a_drift_alert_through_alertmanager_starts_a_loop_run_trained_in_the_trainer_container(stack: Stack) -> None:
    # The first version of `support`: its data on the shared volume, trained by the trainer container through
    # the gateway's job queue (the gateway image has no torch), registered and promoted.
    data = "".join(json.dumps({"prompt": p, "completion": "SUPPORT DESK: " + p}) + "\n" for p in SUPPORT)
    stack.exec("gateway", f"mkdir -p {SHARED}/seed && cat > {SHARED}/seed/support.jsonl", stdin=data)
    spec = {
        "data": f"{SHARED}/seed/support.jsonl",
        "base": f"/var/lib/driftgate/models/{MODEL}",
        "out": f"{SHARED}/seed/v1",
        "lora": {"rank": 4, "alpha": 8, "dropout": 0.0},
        "loop": {"steps": 2, "batch_size": 2, "eval_every": 1},
        "task_eval_limit": 0,
    }
    started = stack.admin("POST", "/admin/training/jobs", json=spec)
    assert started.status_code == 201, started.text + stack.logs("gateway", tail=200)
    first = wait_job(stack, started.json()["id"])
    record = json.loads(stack.exec("gateway", f"cat {first['progress']['run_record']}"))
    registered = stack.admin(
        "POST", "/admin/adapters/",
        json={"alias": ALIAS, "weights": record["adapter_dir"], "base_model": MODEL,
              "dataset": f"{SHARED}/seed/support.jsonl"},
    )  # fmt: skip
    assert registered.status_code == 201, registered.text + stack.logs("gateway", tail=200)
    assert stack.admin("POST", f"/admin/adapters/{ALIAS}/promote", json={"version": 1}).status_code == 200

    # Users correct six answers of the alias (the test's policy wants six new samples; the default, 20).
    for index, prompt in enumerate(TRAVEL):
        body = {"model": ALIAS, "messages": [{"role": "user", "content": prompt}], "max_tokens": 8, "user": f"u{index}"}
        request_id = chat(stack, body).headers["x-request-id"]
        deadline = time.monotonic() + 60
        while True:  # the request log is written in batches: a fresh request id is found a moment later
            correction = {"request_id": request_id, "correction": "TRAVEL DESK."}
            feedback = stack.admin("POST", "/v1/feedback", json=correction)
            if feedback.status_code != 404 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert feedback.status_code == 201, feedback.text

    # The alert as Prometheus' EmbeddingDrift rule raises it, handed to Alertmanager, which routes it to the
    # gateway's /admin/alerts with the admin key (alertmanager.yml).
    alert = [{"labels": {"alertname": "EmbeddingDrift", "alias": ALIAS, "severity": "warning", "route_to": "driftgate"},
              "annotations": {"summary": "compose stack test"}}]  # fmt: skip
    assert httpx.post(f"{stack.url('alertmanager')}/api/v2/alerts", json=alert).status_code == 200
    deadline = time.monotonic() + 120
    while True:  # group_wait is 10 s
        runs = stack.admin("GET", "/admin/loop", params={"alias": ALIAS})
        assert runs.status_code == 200, runs.text
        if runs.json()["runs"] or time.monotonic() > deadline:
            break
        time.sleep(2)
    (run,) = runs.json()["runs"]
    assert run["status"] not in ("skipped", "failed"), run
    assert run["timeline"][0]["data"]["annotations"] == {"summary": "compose stack test"}, run["timeline"]

    deadline = time.monotonic() + 1200
    while run["status"] not in RUN_ENDED and time.monotonic() < deadline:
        time.sleep(3)
        run = stack.admin("GET", f"/admin/loop/{run['id']}").json()
    steps = [event["step"] for event in run["timeline"]]
    assert run["job_id"] and "job" in steps, run
    job = wait_job(stack, run["job_id"])
    assert job["out"].startswith(f"{SHARED}/loop/{run['id']}/"), job
    # The offline gate judged the candidate: it serves a canary share or stays out, production unchanged.
    assert run["status"] in ("canary", "rejected"), run["timeline"]
    assert "eval" in steps, run["timeline"]
    listed = {
        item["id"]: item["progress"]["state"] for item in stack.admin("GET", "/admin/training/jobs").json()["jobs"]
    }
    assert listed == {first["id"]: "succeeded", job["id"]: "succeeded"}, listed


def test_down_leaves_no_secret_in_a_volume(stack: Stack) -> None:
    stack.compose("down", "--timeout", "10", timeout=300)  # the volumes stay: what would an attacker find there?
    volumes = stack.volumes()
    assert {name.removeprefix(f"{stack.project}_") for name in volumes} == {
        "models",
        "shared",
        "postgres",
        "prometheus",
    }
    needles = {name: value.encode() for name, value in stack.keys.items()}
    found = []
    for volume in volumes:
        root = Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume).stdout.strip())
        for path in (p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            content = path.read_bytes()
            found += [
                f"{name} in {volume}:{path.relative_to(root)}" for name, value in needles.items() if value in content
            ]
    assert found == []


def chat(stack: Stack, body: dict) -> httpx.Response:
    """POST /v1/chat/completions, retried while the gateway's backend (or a fresh adapter) is not up yet."""
    deadline = time.monotonic() + 300
    while True:
        response = stack.admin("POST", "/v1/chat/completions", json=body)
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert response.status_code == 200, response.text + stack.logs("vllm")
    return response


def wait_job(stack: Stack, job_id: str) -> dict:
    """A training job's status once it ended; it must have succeeded in the trainer container."""
    deadline = time.monotonic() + 900
    while True:
        job = stack.admin("GET", f"/admin/training/jobs/{job_id}").json()
        if job["progress"]["state"] in JOB_ENDED or time.monotonic() > deadline:
            break
        time.sleep(3)
    logs = stack.admin("GET", f"/admin/training/jobs/{job_id}/logs").json()["logs"]
    assert job["progress"]["state"] == "succeeded", (job, logs[-3000:], stack.logs("trainer"))
    # The trainer container's worker claimed it (the gateway has no torch: it could not have run it).
    assert f"{job_id} claimed" in stack.logs("trainer", tail=400), stack.logs("trainer")
    return job
