"""Training jobs the gateway can start, watch and cancel: :class:`JobRunner` is the interface,
:class:`LocalJobRunner` the embedded implementation (a child process on this machine).

The Kubernetes implementation (``training/k8s_jobs.py``) creates a Job from the same
:class:`~training.config.TrainSpec` and reads the same :class:`~training.status.Progress` from shared
storage. Each local job lives in ``<workspace>/jobs/<id>/``:
``spec.json``, ``status.json`` (written by the child), ``job.json`` (pid, base model) and ``train.log``.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

import msgspec

from training.config import TrainSpec
from training.status import Progress, State, read_progress, write_json_atomic

ACTIVE: frozenset[State] = frozenset({"queued", "running"})


class JobConflict(Exception):
    """A job for this base model is already queued or running."""


class JobStatus(msgspec.Struct):
    id: str
    base_model: str
    out: str
    progress: Progress
    created_at: float


# runtime_checkable: Litestar checks what a provider returns against the handler's annotation (isinstance).
@runtime_checkable
class JobRunner(Protocol):
    # A folder the jobs can read and write (a job's data and its adapter go under it): this machine's home for
    # local jobs, the storage shared with the trainer pods for Kubernetes Jobs.
    workspace: Path

    def start(self, spec: TrainSpec) -> JobStatus: ...
    def status(self, job_id: str) -> JobStatus: ...
    def list(self) -> list[JobStatus]: ...
    def cancel(self, job_id: str) -> JobStatus: ...
    def logs(self, job_id: str, tail_bytes: int = 65536) -> str: ...


class JobRecord(msgspec.Struct):
    """A job's ``job.json``, the same for both runners: what the job trains, and whether it was cancelled."""

    id: str
    base_model: str
    out: str
    created_at: float
    cancelled: bool = False
    # The local child's process group (the Kubernetes runner asks the cluster instead).
    pid: int | None = None


def read_job_record(root: Path, job_id: str) -> JobRecord:
    """``KeyError`` for an unknown job id, as the :class:`JobRunner` interface promises."""
    try:
        return msgspec.json.decode((root / job_id / "job.json").read_bytes(), type=JobRecord)
    except FileNotFoundError as exc:
        raise KeyError(job_id) from exc


def job_ids(root: Path) -> list[str]:
    """Every job under ``root``, oldest first (ids start with their creation time)."""
    return [path.parent.name for path in sorted(root.glob("*/job.json"))]


@contextmanager
def new_job_folder(
    root: Path, base: str, spec: TrainSpec, list_jobs: Callable[[], list[JobStatus]]
) -> Iterator[tuple[str, Path, TrainSpec]]:
    """One active job per base model: check, then create the job's folder (spec, first status), all under a
    lock on ``root`` shared by every gateway worker; the caller launches the job before the lock is released."""
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for job in list_jobs():
            if job.base_model == base and job.progress.state in ACTIVE:
                raise JobConflict(f"job {job.id} is already training {base}")
        job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        folder = root / job_id
        folder.mkdir()
        spec = msgspec.structs.replace(spec, status_file=str(folder / "status.json"))
        (folder / "spec.json").write_bytes(msgspec.json.encode(spec))
        write_json_atomic(folder / "status.json", Progress(updated_at=time.time()))
        yield job_id, folder, spec


def launch_training(python: str, folder: Path, preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
    """The job's training process, ``python -m training.cli run --spec <folder>/spec.json``, writing
    ``train.log``, in its own process group so a cancel stops it and everything it started."""
    with open(folder / "train.log", "ab") as log:
        return subprocess.Popen(
            [python, "-m", "training.cli", "run", "--spec", str(folder / "spec.json")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec_fn,
            cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, "COLUMNS": "120"},
        )


def stop_process_group(pid: int, alive: Callable[[], bool], grace_s: float) -> None:
    """SIGTERM the group, then SIGKILL it if it outlives ``grace_s``."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive():
        _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def finished(progress: Progress | None, state: State, message: str) -> Progress:
    """``progress`` ended as ``state``: how far it got stays readable, the phase is done."""
    return msgspec.structs.replace(
        progress or Progress(), state=state, phase="done", message=message, updated_at=time.time()
    )


def settle_unreported(folder: Path, cancelled: bool, reason: str = "") -> Progress:
    """The training process is gone but its status still says queued or running (crash, kill -9, a lost
    worker): nothing it wrote counts. Recorded in ``status.json`` so every reader agrees."""
    progress = read_progress(folder / "status.json")
    if cancelled:
        progress = finished(progress, "cancelled", "cancelled")
    else:
        reason = reason or "the training process exited without a result; see the logs"
        progress = finished(progress, "failed", reason)
    write_json_atomic(folder / "status.json", progress)
    return progress


def tail_log(folder: Path, tail_bytes: int) -> str:
    """The end of a job's ``train.log``; ``KeyError`` when the job has none (unknown id)."""
    path = folder / "train.log"
    if not path.exists():
        raise KeyError(folder.name)
    with open(path, "rb") as log:
        log.seek(max(0, path.stat().st_size - tail_bytes))
        return log.read().decode("utf-8", errors="replace")


class LocalJobRunner:
    """One child process per job (``python -m training.cli run --spec``), in its own process group."""

    def __init__(self, workspace: str | Path, python: str = sys.executable) -> None:
        self.workspace = Path(workspace)
        self.root = self.workspace / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._python = python
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, spec: TrainSpec) -> JobStatus:
        base = str(Path(spec.base).resolve())
        with new_job_folder(self.root, base, spec, self.list) as (job_id, folder, spec):
            child = launch_training(self._python, folder)
            self._children[job_id] = child
            write_json_atomic(folder / "job.json", JobRecord(job_id, base, spec.out, time.time(), pid=child.pid))
        return self.status(job_id)

    def status(self, job_id: str) -> JobStatus:
        folder = self.root / job_id
        job = read_job_record(self.root, job_id)
        progress = read_progress(folder / "status.json") or Progress()
        if progress.state in ACTIVE and not self._alive(job):
            progress = settle_unreported(folder, job.cancelled)
        return JobStatus(job.id, job.base_model, job.out, progress, job.created_at)

    def list(self) -> list[JobStatus]:
        return [self.status(job_id) for job_id in job_ids(self.root)]

    def cancel(self, job_id: str, grace_s: float = 10.0) -> JobStatus:
        folder = self.root / job_id
        job = read_job_record(self.root, job_id)
        if self.status(job_id).progress.state not in ACTIVE:
            return self.status(job_id)
        write_json_atomic(folder / "job.json", msgspec.structs.replace(job, cancelled=True))
        if job.pid is not None:
            stop_process_group(job.pid, lambda: self._alive(job), grace_s)
        progress = finished(read_progress(folder / "status.json"), "cancelled", "cancelled")
        write_json_atomic(folder / "status.json", progress)
        return self.status(job_id)

    def logs(self, job_id: str, tail_bytes: int = 65536) -> str:
        return tail_log(self.root / job_id, tail_bytes)

    def _alive(self, job: JobRecord) -> bool:
        child = self._children.get(job.id)
        if child is not None:
            return child.poll() is None
        if job.pid is None:
            return False
        try:  # started by another gateway worker: a zombie or a reused pid reads as gone
            with open(f"/proc/{job.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            return fields[0] != "Z" and int(fields[2]) == job.pid  # state, process group = our session leader
        except (FileNotFoundError, IndexError, ValueError):
            return False
