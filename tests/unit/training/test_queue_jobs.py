"""The shared-folder job queue with real processes: jobs queued by :class:`QueuedJobRunner` are claimed and
run by real ``driftgate train worker`` subprocesses (the compose stack's trainer container)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import JobsSettings, ModelRoute, load_settings, state_url
from gateway.host.job_runners import job_runner
from gateway.security.keys import KeyStore
from tests.conftest import running_gateway, settings_for
from tests.unit.training.test_jobs import wait_for
from tests.unit.training.test_training_cpu import tiny_spec, write_dataset
from training.jobs import JobConflict, LocalJobRunner
from training.queue_jobs import INTERRUPTED, LOST_WORKER, QueuedJobRunner


class Worker:
    """A real ``python -m training.cli worker`` (the trainer image's entrypoint form) with its console log."""

    def __init__(self, workspace: Path, log: Path, *extra: str) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "training.cli", "worker", "--workspace", str(workspace), *extra],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "COLUMNS": "200"},
            )

    def output(self) -> str:
        return self.log.read_text()

    def terminate(self, timeout_s: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def crash_spec(tmp_path: Path, base: Path | str, name: str = "out"):
    """The cheapest real run: the training process starts, fails on its missing data, and says so."""
    return tiny_spec(tmp_path / "missing.jsonl", Path(base), tmp_path / name)


def training_processes(job_folder: Path) -> list[int]:
    """Pids of live training processes for this job (their command line names its spec)."""
    spec = str(job_folder / "spec.json").encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError, IndexError):
            continue
        if spec in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def test_a_queued_job_is_run_by_a_worker_which_keeps_going_until_sigterm(
    tmp_path: Path, base_model: Path, workers: list[Worker]
) -> None:
    runner = QueuedJobRunner(tmp_path / "shared")
    crashing = runner.start(crash_spec(tmp_path, base_model))
    assert crashing.progress.state == "queued" and runner.logs(crashing.id) == ""
    with pytest.raises(JobConflict, match=crashing.id):
        runner.start(crash_spec(tmp_path, base_model, "out2"))
    time.sleep(1.5)
    assert runner.status(crashing.id).progress.state == "queued", "nothing runs a job but a worker"

    workers.append(worker := Worker(runner.workspace, tmp_path / "worker.log"))
    failed = wait_for(lambda: (s := runner.status(crashing.id)).progress.state == "failed" and s)
    assert "missing.jsonl" in failed.progress.message
    assert "FileNotFoundError" in runner.logs(crashing.id)

    # The same worker takes the next job: a real tiny training run, to the adapter and its run record.
    data = write_dataset(tmp_path / "pirate.jsonl")
    trained = runner.start(tiny_spec(data, base_model, tmp_path / "trained"))
    done = wait_for(lambda: (s := runner.status(trained.id)).progress.state not in ("queued", "running") and s, 240)
    assert done.progress.state == "succeeded", runner.logs(trained.id)
    assert done.progress.run_record and Path(done.progress.run_record).exists()
    assert (tmp_path / "trained" / "adapter" / "adapter_config.json").exists()
    assert [job.id for job in runner.list()] == [crashing.id, trained.id]

    wait_for(lambda: f"{trained.id} succeeded" in worker.output(), 30)
    assert worker.terminate() == 0
    output = worker.output()
    assert f"{crashing.id} failed" in output and "stopped" in output
    assert runner.status(trained.id).progress.state == "succeeded"  # stopping the worker later changes nothing


def test_two_workers_never_claim_the_same_job(tmp_path: Path, workers: list[Worker]) -> None:
    runner = QueuedJobRunner(tmp_path / "shared")
    jobs = [runner.start(crash_spec(tmp_path, tmp_path / f"base-{i}", f"out-{i}")).id for i in range(6)]
    workers.extend(Worker(runner.workspace, tmp_path / f"worker-{n}.log") for n in range(2))
    wait_for(lambda: all(runner.status(job).progress.state == "failed" for job in jobs))
    # Each worker's console names the jobs it took; each job's claim names the one worker that took it.
    taken = {w.process.pid: [job for job in jobs if f"{job} claimed" in w.output()] for w in workers}
    assert sorted(taken[workers[0].process.pid] + taken[workers[1].process.pid]) == sorted(jobs), taken
    for pid, claimed in taken.items():
        for job in claimed:
            assert (runner.root / job / "claimed").read_text().endswith(f":{pid}")
    assert all(worker.terminate() == 0 for worker in workers)


def test_racing_claims_take_each_job_exactly_once(tmp_path: Path) -> None:
    runner = QueuedJobRunner(tmp_path / "shared")
    jobs = {runner.start(crash_spec(tmp_path, tmp_path / f"base-{i}", f"out-{i}")).id for i in range(30)}
    taken: list[str] = []
    barrier = threading.Barrier(8)

    def claim_all(name: str) -> None:
        barrier.wait()
        while (folder := runner.claim_oldest(name)) is not None:
            taken.append(folder.name)

    threads = [threading.Thread(target=claim_all, args=(f"w{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == sorted(jobs)


def test_a_job_claimed_after_a_long_wait_is_not_taken_for_lost(tmp_path: Path) -> None:
    runner = QueuedJobRunner(tmp_path / "shared", stale_s=1.0)
    job = runner.start(crash_spec(tmp_path, tmp_path / "base")).id
    time.sleep(1.5)
    assert runner.status(job).progress.state == "queued"  # waiting is not failing
    claimed = runner.claim_oldest("w1")
    assert claimed is not None and claimed.name == job and runner.claim_oldest("w2") is None
    assert runner.status(job).progress.state == "queued"
    time.sleep(1.5)  # no worker touches the claim: lost
    lost = runner.status(job).progress
    assert lost.state == "failed" and lost.message.startswith(LOST_WORKER)


def test_cancel_of_a_queued_job_means_no_worker_runs_it(tmp_path: Path, workers: list[Worker]) -> None:
    runner = QueuedJobRunner(tmp_path / "shared")
    first = runner.start(crash_spec(tmp_path, tmp_path / "base-a", "out-a"))
    assert runner.cancel(first.id).progress.state == "cancelled"
    assert runner.cancel(first.id).progress.state == "cancelled"  # twice is fine
    assert not (runner.root / first.id / "queued").exists()
    # The base model is free again, and a worker runs the next job but never the cancelled one.
    again = runner.start(crash_spec(tmp_path, tmp_path / "base-a", "out-b"))
    workers.append(Worker(runner.workspace, tmp_path / "worker.log"))
    wait_for(lambda: runner.status(again.id).progress.state == "failed")
    assert runner.status(first.id).progress.state == "cancelled"
    assert not (runner.root / first.id / "train.log").exists()
    assert first.id not in workers[0].output()
    with pytest.raises(KeyError):
        runner.cancel("no-such-job")


def test_cancel_sigterm_and_a_killed_worker_never_leave_a_job_running(
    tmp_path: Path, base_model: Path, workers: list[Worker]
) -> None:
    runner = QueuedJobRunner(tmp_path / "shared", stale_s=3.0)
    data = write_dataset(tmp_path / "pirate.jsonl")

    def training(name: str) -> str:
        job = runner.start(tiny_spec(data, base_model, tmp_path / name, steps=5000)).id
        wait_for(lambda: runner.status(job).progress.phase == "training")
        return job

    # A worker killed mid-job (kill -9): its training process dies with it, and the job reads as failed.
    workers.append(first := Worker(runner.workspace, tmp_path / "worker-1.log", "--stale-after", "3"))
    lost = training("lost")
    assert training_processes(runner.root / lost)
    first.process.kill()
    first.process.wait()
    wait_for(lambda: not training_processes(runner.root / lost), 10)
    assert QueuedJobRunner(runner.workspace).status(lost).progress.state == "running"  # not stale yet at 30 s
    # A restarted worker settles it on start, on disk, before taking more.
    time.sleep(3.5)
    workers.append(second := Worker(runner.workspace, tmp_path / "worker-2.log", "--stale-after", "3"))
    wait_for(lambda: f"{lost} failed" in second.output(), 60)
    on_disk = QueuedJobRunner(runner.workspace).status(lost).progress
    assert on_disk.state == "failed" and on_disk.message.startswith(LOST_WORKER)

    # A cancel of a running job: the worker stops the training process and records it cancelled.
    cancelled = training("cancelled")
    assert runner.cancel(cancelled).progress.state == "cancelled"
    wait_for(lambda: f"{cancelled} cancelled" in second.output(), 30)
    assert not training_processes(runner.root / cancelled)

    # SIGTERM while a job runs: the worker stops it, records it failed (interrupted) and exits cleanly.
    interrupted = training("interrupted")
    assert second.terminate() == 0
    assert not training_processes(runner.root / interrupted)
    assert QueuedJobRunner(runner.workspace).status(interrupted).progress.message == INTERRUPTED


def test_the_gateway_picks_the_queue_runner_from_its_settings(tmp_path: Path) -> None:
    route = ModelRoute("smol", ["http://127.0.0.1:9"])
    queued = settings_for(route, home=str(tmp_path / "home"), jobs=JobsSettings("queue", str(tmp_path / "shared")))
    runner = job_runner(queued, {})
    assert isinstance(runner, QueuedJobRunner) and runner.workspace == tmp_path / "shared"
    local = job_runner(settings_for(route, home=str(tmp_path / "home")), {})
    assert isinstance(local, LocalJobRunner) and local.workspace == tmp_path / "home"
    from_env = load_settings(
        environ={"DRIFTGATE_JOBS__RUNNER": "queue", "DRIFTGATE_JOBS__WORKSPACE": str(tmp_path / "env")}
    )
    assert isinstance(job_runner(from_env, {}), QueuedJobRunner)
    with pytest.raises(Exception, match="runner"):
        load_settings(environ={"DRIFTGATE_JOBS__RUNNER": "celery"})


async def test_training_jobs_api_queues_a_job_for_the_worker(tmp_path: Path) -> None:
    """`POST /admin/training/jobs` through a gateway with the queue runner, keys enforced: the job lands in the
    queue a worker claims from, and the listing, status and cancel routes answer for it. (The route's runner
    dependency once failed every request with a 500: a Protocol Litestar could not check.)"""
    route = ModelRoute("smol", ["http://127.0.0.1:9"])
    settings = settings_for(route, home=str(tmp_path / "home"), jobs=JobsSettings("queue", str(tmp_path / "shared")))
    keys = KeyStore(state_url(settings))
    _, admin = keys.create("ops", "admin")
    _, app = keys.create("app", "inference")
    spec = {"data": str(tmp_path / "d.jsonl"), "base": "/models/smol", "out": str(tmp_path / "out")}
    async with running_gateway(settings) as client:
        assert (await client.post("/admin/training/jobs", json=spec)).status_code == 401
        as_app = await client.post("/admin/training/jobs", json=spec, headers={"authorization": f"Bearer {app}"})
        assert as_app.status_code == 403
        headers = {"authorization": f"Bearer {admin}"}
        started = await client.post("/admin/training/jobs", json=spec, headers=headers)
        assert started.status_code == 201, started.text
        job = started.json()
        assert (job["base_model"], job["progress"]["state"]) == ("/models/smol", "queued")
        assert QueuedJobRunner(tmp_path / "shared").claim_oldest("test") == tmp_path / "shared" / "jobs" / job["id"]
        listed = (await client.get("/admin/training/jobs", headers=headers)).json()["jobs"]
        assert [item["id"] for item in listed] == [job["id"]]
        missing = await client.get("/admin/training/jobs/nope", headers=headers)
        assert missing.status_code == 404
        bad = await client.post("/admin/training/jobs", json={"data": 1}, headers=headers)
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
        assert [p.name for p in (tmp_path / "shared" / "jobs").iterdir() if p.is_dir()] == [job["id"]]
    keys.close()
