"""The local job runner with real child processes: progress file, one job per base model, cancel, crash."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.unit.training.test_training_cpu import tiny_spec, write_dataset
from training.jobs import JobConflict, LocalJobRunner


def wait_for(check, timeout_s: float = 180.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError("condition not met in time")


def test_start_progress_one_per_base_model_and_cancel(tmp_path: Path, base_model: Path) -> None:
    runner = LocalJobRunner(tmp_path)
    data = write_dataset(tmp_path / "pirate.jsonl")
    job = runner.start(tiny_spec(data, base_model, tmp_path / "out", steps=500))
    assert job.progress.state in ("queued", "running")
    with pytest.raises(JobConflict, match=job.id):
        runner.start(tiny_spec(data, base_model, tmp_path / "out2"))
    running = wait_for(lambda: (s := runner.status(job.id)).progress.state == "running" and s)
    assert running.progress.total_steps == 500 and running.progress.updated_at > 0
    assert (tmp_path / "jobs" / job.id / "status.json").exists()
    pid = runner._children[job.id].pid
    cancelled = runner.cancel(job.id)
    assert cancelled.progress.state == "cancelled"
    assert runner._children[job.id].poll() is not None, f"process {pid} still alive"
    # The base model is free again.
    second = runner.start(tiny_spec(data, base_model, tmp_path / "out3", steps=500))
    assert [j.id for j in runner.list()] == [job.id, second.id]
    runner.cancel(second.id)


def test_a_crash_is_reported_as_failed_with_logs(tmp_path: Path, base_model: Path) -> None:
    runner = LocalJobRunner(tmp_path)
    job = runner.start(tiny_spec(tmp_path / "missing.jsonl", base_model, tmp_path / "out"))
    failed = wait_for(lambda: (s := runner.status(job.id)).progress.state == "failed" and s)
    assert "missing.jsonl" in failed.progress.message
    assert "FileNotFoundError" in runner.logs(job.id)
    assert not (tmp_path / "out" / "adapter").exists()
