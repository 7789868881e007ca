"""Training jobs through a folder shared with a trainer worker: :class:`QueuedJobRunner` queues them (the
gateway's side), :class:`QueueWorker` claims and runs them (``driftgate train worker``, the trainer's side).

For a host where the gateway cannot train (no torch in its image) but a trainer container shares a volume
with it, as in the compose stack. Jobs live in ``<workspace>/jobs/<id>/`` exactly as the local runner's do
(``spec.json``, ``status.json`` written by the training process, ``job.json``, ``train.log``), plus:

* ``queued``: present while the job waits. A worker claims it by renaming it to ``claimed``; a rename is
  atomic on one filesystem, so of two workers racing for a job exactly one succeeds, and a cancel that
  deletes ``queued`` first leaves nothing to claim.
* ``claimed``: names the worker; the worker touches it every :data:`HEARTBEAT_S` while the job runs. A job
  still queued or running whose claim has not been touched for ``stale_s`` lost its worker (killed, its
  container gone) and reads as failed, whoever looks first: the gateway or a (re)starting worker.

A cancel sets ``cancelled`` in ``job.json``; the worker stops the training process within a heartbeat.
Files, not a broker: the two sides already share this volume for data and adapters, and a queue that holds
at most one job per base model needs no more.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec
from rich.console import Console

from training.config import TrainSpec
from training.jobs import (
    ACTIVE,
    JobRecord,
    JobStatus,
    finished,
    job_ids,
    launch_training,
    new_job_folder,
    read_job_record,
    settle_unreported,
    stop_process_group,
    tail_log,
)
from training.status import Progress, read_progress, write_json_atomic

HEARTBEAT_S = 1.0
STALE_S = 30.0
QUEUED, CLAIMED = "queued", "claimed"
INTERRUPTED = "interrupted: the trainer worker was stopped (SIGTERM) while this job ran"
LOST_WORKER = "the trainer worker stopped without finishing this job"


class QueuedJobRunner:
    """The :class:`~training.jobs.JobRunner` whose jobs a ``driftgate train worker`` runs."""

    def __init__(self, workspace: str | Path, stale_s: float = STALE_S) -> None:
        self.workspace = Path(workspace)
        self.root = self.workspace / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.stale_s = stale_s

    def start(self, spec: TrainSpec) -> JobStatus:
        # The base as given: it is a path inside the trainer's filesystem, which this side may not see.
        with new_job_folder(self.root, spec.base, spec, self.list) as (job_id, folder, spec):
            write_json_atomic(folder / "job.json", JobRecord(job_id, spec.base, spec.out, time.time()))
            (folder / QUEUED).touch()  # last: a worker never sees a half-written job
        return self.status(job_id)

    def status(self, job_id: str) -> JobStatus:
        folder = self.root / job_id
        job = read_job_record(self.root, job_id)
        progress = read_progress(folder / "status.json") or Progress()
        if progress.state in ACTIVE:
            if job.cancelled:
                progress = finished(progress, "cancelled", "cancelled")
            elif self._worker_lost(folder):
                reason = f"{LOST_WORKER} (no heartbeat for {self.stale_s:g} s)"
                progress = settle_unreported(folder, False, reason)
        return JobStatus(job.id, job.base_model, job.out, progress, job.created_at)

    def list(self) -> list[JobStatus]:
        return [self.status(job_id) for job_id in job_ids(self.root)]

    def cancel(self, job_id: str) -> JobStatus:
        folder = self.root / job_id
        job = read_job_record(self.root, job_id)
        if self.status(job_id).progress.state not in ACTIVE:
            return self.status(job_id)
        write_json_atomic(folder / "job.json", msgspec.structs.replace(job, cancelled=True))
        try:
            (folder / QUEUED).unlink()  # not claimed yet: no worker will ever run it
        except FileNotFoundError:
            return self.status(job_id)  # claimed: its worker stops it within a heartbeat
        progress = finished(read_progress(folder / "status.json"), "cancelled", "cancelled")
        write_json_atomic(folder / "status.json", progress)
        return self.status(job_id)

    def logs(self, job_id: str, tail_bytes: int = 65536) -> str:
        read_job_record(self.root, job_id)
        try:
            return tail_log(self.root / job_id, tail_bytes)
        except KeyError:
            return ""  # still queued: nothing has run yet

    def claim_oldest(self, worker: str) -> Path | None:
        """The oldest queued job's folder, now claimed by ``worker``; ``None`` when nothing waits."""
        for marker in sorted(self.root.glob(f"*/{QUEUED}")):
            claim = marker.with_name(CLAIMED)
            try:
                os.rename(marker, claim)
            except FileNotFoundError:
                continue  # another worker (or a cancel) got there first
            claim.write_text(worker)
            return marker.parent
        return None

    def _worker_lost(self, folder: Path) -> bool:
        try:
            claim = (folder / CLAIMED).stat()
        except FileNotFoundError:
            return False  # not claimed yet: waiting is not failing
        # The change time too: a rename keeps the marker's mtime (when it was queued) but sets its ctime, so a
        # job claimed after a long wait is fresh from the moment it is claimed.
        return time.time() - max(claim.st_mtime, claim.st_ctime) > self.stale_s


def _die_with_parent() -> None:
    """Linux's PR_SET_PDEATHSIG: the kernel kills the training process when its worker dies, however it
    dies (kill -9 included), so a lost worker never leaves a trainer holding the GPU."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class QueueWorker:
    """Claims queued jobs one at a time, oldest first, and runs each as the local runner would."""

    def __init__(
        self, runner: QueuedJobRunner, console: Console, python: str = sys.executable, poll_s: float = HEARTBEAT_S
    ) -> None:
        self.runner = runner
        self.console = console
        self.python = python
        self.poll_s = poll_s
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = False

    def stop(self, *_: object) -> None:
        self.stopping = True

    def serve(self) -> None:
        # Settle what a lost worker left (the status check marks stale claims failed) before taking more.
        for job in self.runner.list():
            if job.progress.state == "failed" and job.progress.message.startswith(LOST_WORKER):
                self.console.print(f"[yellow]{job.id}[/] failed: {job.progress.message}")
        self.console.print(f"worker {self.name} waiting for jobs in [bold]{self.runner.root}[/]")
        while not self.stopping:
            folder = self.runner.claim_oldest(self.name)
            if folder is None:
                time.sleep(self.poll_s)
                continue
            self.run_job(folder)
        self.console.print(f"worker {self.name} stopped")

    def run_job(self, folder: Path) -> None:
        job_id = folder.name
        job = read_job_record(self.runner.root, job_id)
        self.console.print(f"[bold]{job_id}[/] claimed: training {job.base_model}")
        if job.cancelled:  # cancelled between the cancel's flag and its try at the queued marker
            progress = settle_unreported(folder, True)
            self.console.print(f"[bold]{job_id}[/] {progress.state}: {progress.message}")
            return
        write_json_atomic(folder / "status.json", Progress(state="running", phase="preparing", updated_at=time.time()))
        child = launch_training(self.python, folder, preexec_fn=_die_with_parent)
        claim = folder / CLAIMED
        while child.poll() is None:
            os.utime(claim)
            if self.stopping or read_job_record(self.runner.root, job_id).cancelled:
                self._stop(child, folder)
                break
            time.sleep(self.poll_s)
        os.utime(claim)
        progress = read_progress(folder / "status.json")
        if progress is None or progress.state in ACTIVE:
            progress = settle_unreported(folder, read_job_record(self.runner.root, job_id).cancelled)
        self.console.print(f"[bold]{job_id}[/] {progress.state}: {progress.message}")

    def _stop(self, child: subprocess.Popen[bytes], folder: Path) -> None:
        """A cancel or the worker's own SIGTERM: the training process stops; when the worker is stopping, the
        job is recorded as failed (interrupted), not left running for the next worker to guess about."""
        stop_process_group(child.pid, lambda: child.poll() is None, grace_s=10.0)
        progress = read_progress(folder / "status.json")
        cancelled = read_job_record(self.runner.root, folder.name).cancelled
        if self.stopping and not cancelled and (progress is None or progress.state in ACTIVE):
            write_json_atomic(folder / "status.json", finished(progress, "failed", INTERRUPTED))
