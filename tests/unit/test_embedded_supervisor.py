"""The vLLM supervisor behind `driftgate up`, driven with a stand-in server process."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.config import EmbeddedVLLMSettings
from gateway.host.embedded import VLLMServer, VLLMStartError
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


class StandInServer(VLLMServer):
    """Runs the fake upstream instead of vLLM: same process handling, seconds instead of a minute."""

    def __init__(self, tmp_path: Path, script: list[str] | None = None) -> None:
        super().__init__(EmbeddedVLLMSettings(port=free_port(), startup_timeout_s=20), tmp_path, tmp_path / "child.log")
        self.script = script

    def command(self) -> list[str]:
        return self.script or [sys.executable, "-m", "tests.fake_upstream", "--port", str(self.config.port)]

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "PYTHONPATH": str(REPO)}


def wait_until(condition, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_vllm_command_enables_runtime_lora(tmp_path: Path) -> None:
    server = VLLMServer(
        EmbeddedVLLMSettings(port=8123, extra_args=["--dtype", "float32"]), tmp_path / "m", tmp_path / "l"
    )
    command = server.command()
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert "--enable-lora" in command and command[-2:] == ["--dtype", "float32"]
    assert command.count("--dtype") == 1  # the user's --dtype, not a second one of ours
    assert command[command.index("--port") + 1] == "8123"
    assert server.environment()["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


def test_auto_dtype_is_float32_on_a_cpu_without_native_bf16(tmp_path: Path, monkeypatch) -> None:
    from gateway.host import embedded

    avx2_only = tmp_path / "avx2"
    avx2_only.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    sapphire = tmp_path / "amx"
    sapphire.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16\n")
    assert not embedded.cpu_has_native_bf16(avx2_only) and embedded.cpu_has_native_bf16(sapphire)
    assert not embedded.cpu_has_native_bf16(tmp_path / "missing")

    monkeypatch.setattr(embedded, "is_cpu_build", lambda: True)
    monkeypatch.setattr(embedded, "cpu_has_native_bf16", lambda: False)
    assert embedded.vllm_dtype("auto") == "float32"
    assert embedded.vllm_dtype("bfloat16") == "bfloat16"  # what the user asks for wins
    command = VLLMServer(EmbeddedVLLMSettings(port=8123), tmp_path / "m", tmp_path / "l").command()
    assert command[command.index("--dtype") + 1] == "float32"
    monkeypatch.setattr(embedded, "cpu_has_native_bf16", lambda: True)
    assert embedded.vllm_dtype("auto") == "auto"
    monkeypatch.setattr(embedded, "is_cpu_build", lambda: False)
    assert embedded.vllm_dtype("auto") == "auto"  # a GPU build keeps vLLM's own choice


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_the_child_ends_when_the_gateway_is_killed_outright(tmp_path: Path) -> None:
    """SIGKILL leaves no chance to stop vLLM in order: the kernel must end it with its parent."""
    import subprocess

    import psutil

    port = free_port()
    parent = subprocess.Popen(
        [sys.executable, "-c", STARTS_A_CHILD_THEN_WAITS, str(port), str(tmp_path)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE
        parent.kill()
        parent.wait()
        child.wait(timeout=20)  # raises psutil.TimeoutExpired if the child outlives its parent
    finally:
        parent.kill()


STARTS_A_CHILD_THEN_WAITS = """
import sys, time
from pathlib import Path
from gateway.config import EmbeddedVLLMSettings
from gateway.host.embedded import VLLMServer

class StandIn(VLLMServer):
    def command(self):
        return [sys.executable, "-m", "tests.fake_upstream", "--port", str(self.config.port)]

home = Path(sys.argv[2])
server = StandIn(EmbeddedVLLMSettings(port=int(sys.argv[1]), startup_timeout_s=20), home, home / "child.log")
server.start()
server.wait_healthy()
print(server.pid, flush=True)
time.sleep(600)
"""


def test_a_dead_child_is_restarted_until_stopped(tmp_path: Path) -> None:
    server = StandInServer(tmp_path)
    server.start()
    try:
        server.wait_healthy()
        supervisor = threading.Thread(target=server.supervise, kwargs={"poll_s": 0.1, "backoff_s": 0.1})
        supervisor.start()
        first_pid = server.pid
        os.killpg(first_pid, signal.SIGKILL)
        wait_until(lambda: server.restarts == 1 and server.healthy())
        assert server.pid != first_pid
    finally:
        server.stop(timeout_s=5)
    supervisor.join(5)
    assert not supervisor.is_alive()
    assert not server.running() and not server.healthy()


def test_a_child_that_dies_while_starting_is_reported_with_its_log(tmp_path: Path) -> None:
    script = [sys.executable, "-c", "import sys; print('CUDA out of memory (stand-in)'); sys.exit(3)"]
    server = StandInServer(tmp_path, script)
    server.start()
    with pytest.raises(VLLMStartError, match="CUDA out of memory"):
        server.wait_healthy()
    server.stop()


def test_a_restart_clears_what_the_dead_server_left_behind(tmp_path: Path) -> None:
    import psutil

    port_holder = StandInServer(tmp_path)
    # Like vLLM's engine: a child in the server's process group that outlives a crash of the server.
    script = [
        "bash",
        "-c",
        f"sleep 600 & exec {sys.executable} -m tests.fake_upstream --port {port_holder.config.port}",
    ]
    server = StandInServer(tmp_path, script)
    server.config = port_holder.config
    server.url = port_holder.url
    server.start()
    try:
        server.wait_healthy()
        (engine,) = psutil.Process(server.pid).children()
        supervisor = threading.Thread(target=server.supervise, kwargs={"poll_s": 0.1, "backoff_s": 0.1})
        supervisor.start()
        os.kill(server.pid, signal.SIGKILL)  # only the server dies
        wait_until(lambda: server.restarts == 1 and server.healthy())
        wait_until(lambda: not engine.is_running() or engine.status() == psutil.STATUS_ZOMBIE)
    finally:
        server.stop(timeout_s=5)
    supervisor.join(5)


def test_tool_calling_is_on_with_smollm2s_parser_unless_the_user_chooses(tmp_path: Path) -> None:
    def command(**config) -> list[str]:
        return VLLMServer(EmbeddedVLLMSettings(port=8123, **config), tmp_path / "m", tmp_path / "l").command()

    default = command()
    assert "--enable-auto-tool-choice" in default
    assert default[default.index("--tool-call-parser") + 1] == "xlam"
    hermes = command(tool_call_parser="hermes")
    assert hermes[hermes.index("--tool-call-parser") + 1] == "hermes"
    assert "--tool-call-parser" not in command(tool_call_parser=None)
    assert "--enable-auto-tool-choice" not in command(tool_call_parser=None)
    # The user's own choice in extra_args wins, once, whichever spelling.
    for extra in (["--enable-auto-tool-choice", "--tool-call-parser", "hermes"], ["--tool-call-parser=hermes"]):
        chosen = command(extra_args=extra)
        assert chosen[-len(extra) :] == extra
        assert sum(arg.startswith("--tool-call-parser") for arg in chosen) == 1
        assert chosen.count("--enable-auto-tool-choice") <= 1
