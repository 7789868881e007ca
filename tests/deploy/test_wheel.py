"""The built wheel, installed into a clean virtual environment (no editable install, no repository on the
path), carries the data files its code reads: a tiny training run mixes in the general-replay set that
training/prepare.py reads next to its module (training/data/general.jsonl)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import msgspec
import pytest

from gateway.host.model_pull import DEFAULT_MODEL, pull
from training.config import DataSettings, LoraSettings, TrainingSchedule, TrainSpec

REPO = Path(__file__).resolve().parents[2]
TORCH_PIN = "torch==" + os.environ.get("TORCH_VERSION", "2.13.0")


def run(*args: str | Path, cwd: Path, timeout: float = 900) -> str:
    # A clean environment: no PYTHONPATH pointing at the repository, no virtual environment of ours.
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", out, REPO, cwd=out)
    (built,) = out.glob("driftgate-*.whl")
    return built


def test_the_wheel_lists_every_data_file_the_code_reads(wheel: Path) -> None:
    """Every file of the four packages that is not Python source (training data, the /docs page and its
    vendored Swagger UI) is in the wheel."""
    names = set(zipfile.ZipFile(wheel).namelist())
    data = {
        path.relative_to(REPO).as_posix()
        for package in ("gateway", "guards", "monitor", "training")
        for path in (REPO / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".py"
    }
    assert "training/data/general.jsonl" in data and "gateway/edge/static/docs.html" in data
    assert data - names == set()


# Installing torch, transformers and peft into a fresh venv and training takes 3-5 minutes on 2 idle cores.
@pytest.mark.timeout(1800)
def test_the_installed_wheel_trains_an_adapter_with_its_general_set(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # The CPU torch first, then the wheel held to it (scripts/setup.sh does the same).
    (tmp_path / "torch-pin.txt").write_text(TORCH_PIN + "\n")
    run(*pip, "-r", tmp_path / "torch-pin.txt", cwd=tmp_path)
    run(*pip, f"{wheel}[train]", "--constraint", tmp_path / "torch-pin.txt", cwd=tmp_path)
    where = "import training.prepare as p; print(p.__file__, p.GENERAL_PATH.exists())"
    located = run(python, "-c", where, cwd=tmp_path)
    assert str(venv) in located and located.split()[-1] == "True", located

    data = tmp_path / "style.jsonl"
    records = ({"prompt": f"Name number {i}.", "completion": f"NUMBER {i}, CAPTAIN."} for i in range(24))
    data.write_text("".join(json.dumps(record) + "\n" for record in records))
    spec = TrainSpec(
        str(data),
        str(pull(DEFAULT_MODEL, REPO / ".driftgate" / "models")),
        str(tmp_path / "out"),
        # general_share > 0: the run reads training/data/general.jsonl from the installed package.
        data_config=DataSettings(eval_share=0.1, min_eval=3, general_share=0.25),
        lora=LoraSettings(rank=4, alpha=8, dropout=0.0),
        loop=TrainingSchedule(steps=4, batch_size=4, learning_rate=1e-3, eval_every=2),
        task_eval_limit=0,
    )
    (tmp_path / "spec.json").write_bytes(msgspec.json.encode(spec))
    run(python, "-m", "training.cli", "run", "--spec", tmp_path / "spec.json", cwd=tmp_path)
    record = json.loads(next((tmp_path / "out").rglob("run.json")).read_text())
    assert record["data"]["general_mixed"] > 0, record["data"]
    assert record["base"]["general_loss"] is not None, record["base"]
    assert any((tmp_path / "out").rglob("adapter_model.safetensors"))
