"""``driftgate train``: a typer app the main CLI mounts; also the job runner's child (``python -m training.cli``).

This module is the composition point that may import ``guards``: it builds the PII redactor and injects it
into data preparation, which itself imports nothing of ours.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from pathlib import Path
from typing import Annotated, Optional, get_args

import msgspec
import typer
from rich.console import Console

from training.config import DataSettings, LoraSettings, Method, TrainingSchedule, TrainSpec
from training.prepare import Redact
from training.status import Progress, write_json_atomic

train_app = typer.Typer(help="Fine-tune LoRA/DoRA/QLoRA adapters and check training data.", no_args_is_help=True)
console = Console(stderr=True)


def guards_redactor() -> Redact:
    """Pattern PII (e-mail, phone, cards, IBAN, SSN, IPs, secrets) replaced by typed placeholders."""
    from guards import GuardModels, InjectionSettings, RedactionContext, StagePipeline, StageSettings, ToxicitySettings

    # Toxicity and injection off: training data is redacted, not blocked. No classifier is loaded or exported,
    # so the models folder is never touched (a temporary one, not the working directory, all the same).
    config = StageSettings(toxicity=ToxicitySettings(enabled=False), injection=InjectionSettings(enabled=False))
    pipeline = StagePipeline.build(
        "input", config, GuardModels(Path(tempfile.gettempdir()) / "driftgate-unused-models")
    )
    return lambda text: pipeline.run(text, RedactionContext()).text


DataOption = Annotated[Path, typer.Option("--data", help="JSONL of chat messages or prompt/completion pairs.")]


@train_app.command()
def prepare(
    data: DataOption,
    base: Annotated[Optional[Path], typer.Option(help="Base model directory: adds the token-length table.")] = None,
    strict: Annotated[bool, typer.Option(help="Fail on the first bad record.")] = False,
    redact_pii: Annotated[bool, typer.Option(help="Redact PII through the guards.")] = True,
    seed: int = 0,
) -> None:
    """Check training data only: bad records, duplicates, leaks, lengths."""
    from training.data import BadData
    from training.prepare import prepare as prepare_data
    from training.run import length_table, lengths, report_table

    try:
        redact = guards_redactor() if redact_pii else None
        prepared = prepare_data(data, DataSettings(strict=strict), redact=redact, seed=seed)
    except BadData as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(report_table(prepared.report))
    if base is not None:
        from transformers import AutoTokenizer

        spec = TrainSpec(str(data), str(base), "")
        console.print(length_table(*lengths(prepared, AutoTokenizer.from_pretrained(base), spec)))


@train_app.command("run")
def run_command(
    spec_file: Annotated[Optional[Path], typer.Option("--spec", help="A job spec (JSON); replaces the flags.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Training JSONL.")] = None,
    base: Annotated[Optional[Path], typer.Option(help="Base model directory.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output directory; the adapter lands in OUT/adapter.")] = None,
    method: Annotated[
        str, typer.Option(help="lora, dora or qlora; dpo trains a LoRA adapter on prompt/chosen/rejected pairs.")
    ] = "lora",
    steps: int = 200,
    eval_every: int = 25,
    batch_size: int = 4,
    grad_accum: int = 1,
    learning_rate: float = 2e-4,
    rank: int = 16,
    general_share: float = 0.0,
    eval_share: Annotated[
        float, typer.Option(help="Share of the records (DPO: of the pairs) held out for evaluation and the gate.")
    ] = 0.1,
    production: Annotated[Optional[Path], typer.Option(help="Current production adapter to compare with.")] = None,
    start_adapter: Annotated[
        Optional[Path], typer.Option(help="Continue training this adapter (warm start; its rank is kept).")
    ] = None,
    beta: Annotated[float, typer.Option(help="DPO only: how far the adapter may move from where it started.")] = 0.1,
    stop_on_forgetting: Annotated[
        bool, typer.Option(help="Stop when the general-set loss passes the forgetting limit; never keep such a point.")
    ] = False,
    seed: int = 0,
) -> None:
    """Train an adapter, evaluate it against the baseline and write run.json + README.md next to it."""
    if spec_file is not None:
        spec = msgspec.json.decode(spec_file.read_bytes(), type=TrainSpec)
    elif data is None or base is None or out is None:
        console.print("[red]error:[/] give --spec, or --data, --base and --out")
        raise typer.Exit(2)
    elif method not in (*get_args(Method), "dpo"):
        console.print(f"[red]error:[/] --method must be lora, dora, qlora or dpo, not {method!r}")
        raise typer.Exit(2)
    else:
        spec = TrainSpec(
            str(data),
            str(base),
            str(out),
            method="lora" if method == "dpo" else msgspec.convert(method, Method),
            objective="dpo" if method == "dpo" else "sft",
            dpo_beta=beta,
            data_config=DataSettings(eval_share=eval_share, general_share=general_share),
            lora=LoraSettings(rank=rank, alpha=2 * rank),
            loop=TrainingSchedule(
                steps=steps,
                eval_every=eval_every,
                batch_size=batch_size,
                grad_accum=grad_accum,
                learning_rate=learning_rate,
                seed=seed,
                stop_on_forgetting=stop_on_forgetting,
            ),
            production_adapter=str(production) if production else None,
            start_adapter=str(start_adapter) if start_adapter else None,
        )
    from training.dpo import run_dpo
    from training.run import run

    on_status = (lambda status: write_json_atomic(spec.status_file, status)) if spec.status_file else None
    try:
        redact = guards_redactor() if spec.redact_pii else None
        if spec.objective == "dpo":
            run_dpo(spec, redact=redact, console=console, on_status=on_status)
        else:
            run(spec, redact=redact, console=console, on_status=on_status)
    except Exception as exc:
        console.print(traceback.format_exc())
        if spec.status_file:
            failed = Progress(state="failed", phase="done", message=f"{type(exc).__name__}: {exc}"[:2000])
            failed.updated_at = time.time()
            write_json_atomic(spec.status_file, failed)
        raise typer.Exit(1) from exc


@train_app.command()
def worker(
    workspace: Annotated[
        Path, typer.Option(help="The folder shared with the gateway (its `jobs.workspace`); jobs are under jobs/.")
    ],
    stale_after: Annotated[
        float, typer.Option(help="Seconds without a heartbeat after which a claimed job's worker counts as lost.")
    ] = 30.0,
) -> None:
    """Run the jobs a gateway queues in WORKSPACE, one at a time, oldest first, until SIGTERM.

    SIGTERM stops the running job and records it as failed (interrupted); SIGINT does the same."""
    import signal

    from training.queue_jobs import QueuedJobRunner, QueueWorker

    queue_worker = QueueWorker(QueuedJobRunner(workspace, stale_s=stale_after), console)
    signal.signal(signal.SIGTERM, queue_worker.stop)
    signal.signal(signal.SIGINT, queue_worker.stop)
    queue_worker.serve()


if __name__ == "__main__":
    train_app()
