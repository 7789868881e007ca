"""The progress a training process reports: written by the child, read by the job runner.

Written atomically (temporary file + rename), so a reader never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

import msgspec

State = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Phase = Literal["queued", "preparing", "baseline", "training", "evaluating", "writing", "done"]


class Progress(msgspec.Struct):
    state: State = "queued"
    phase: Phase = "queued"
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    tokens_per_s: float | None = None
    eval_loss: float | None = None
    best_eval_loss: float | None = None
    message: str = ""
    # Set when the run finished: the run record (run.json) with adapter path, metrics and gate verdict.
    run_record: str | None = None
    updated_at: float = 0.0


def write_json_atomic(path: str | Path, value: object) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(msgspec.json.encode(value))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_progress(path: str | Path) -> Progress | None:
    try:
        return msgspec.json.decode(Path(path).read_bytes(), type=Progress)
    except (FileNotFoundError, msgspec.DecodeError):
        return None
