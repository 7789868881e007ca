"""``POST /admin/adapters/{alias}/merge``: registered versions combined into a new candidate version of ``alias``.

The sources' configs are checked first (one base model; the merged rank within the backends' limit, which a
``cat`` of two rank-16 adapters exceeds at 32), so a merge that could never be served is a 400 before any
weights are loaded. The merge itself runs peft's ``add_weighted_adapter`` in a worker thread
(:mod:`training.merge`; it needs torch and peft where the gateway runs, as ``driftgate up`` has), writes the
adapter under ``<home>/adapters/merged/``, joins the sources' datasets into its own (so it gets a drift
reference and the loop can retrain it), and registers it as a candidate whose ``training_run`` names its
sources: canary and promote it like any version.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from gateway.adapters.models import AdapterVersion, RegisterRequest
from gateway.adapters.service import Adapters
from gateway.domain_errors import Invalid, NotFound, Unavailable
from training.merge import MergeError, Method, adapter_config, merge_adapters, planned_rank


class MergeRequest(msgspec.Struct, forbid_unknown_fields=True):
    # Registered versions to combine, e.g. ["support@2", "travel@1"].
    sources: Annotated[list[str], Meta(min_length=2, max_length=16)]
    method: Method = "linear"
    # One weight per source; None = equal weights summing to one.
    weights: list[float] | None = None
    # The share of each delta kept by ties / dare methods.
    density: Annotated[float, Meta(gt=0, le=1)] | None = None
    # The rank an svd merge reduces to; None = the largest source rank.
    svd_rank: Annotated[int, Meta(ge=1)] | None = None
    author: str | None = None


async def merge(adapters: Adapters, alias: str, request: MergeRequest) -> AdapterVersion:
    """Check, merge, register: the new candidate version of ``alias``."""
    snapshot = await adapters.refresh()
    sources = [snapshot.versions.get(name) for name in request.sources]
    missing = [name for name, found in zip(request.sources, sources, strict=True) if found is None]
    if missing:
        raise NotFound("adapter", f"No registered version {', '.join(f'`{name}`' for name in missing)}.")
    versions: list[AdapterVersion] = [version for version in sources if version is not None]
    bases = {version.base_model for version in versions}
    if len(bases) != 1:
        raise Invalid("adapter", f"The sources adapt different base models ({', '.join(sorted(bases))}).")
    weights = request.weights or [1.0 / len(versions)] * len(versions)
    if len(weights) != len(versions):
        raise Invalid("adapter", f"{len(versions)} sources but {len(weights)} weights.", field="weights")
    base_model = versions[0].base_model
    route = adapters.route(base_model)
    max_rank = route.max_lora_rank or adapters.settings.embedded.max_lora_rank
    configs = await asyncio.to_thread(lambda: [adapter_config(version.weights) for version in versions])
    try:
        rank = planned_rank(configs, request.method, request.svd_rank)
    except MergeError as exc:
        raise Invalid("adapter", str(exc), field="method") from exc
    if rank > max_rank:
        raise Invalid(
            "method",
            f"A `{request.method}` merge of these sources has LoRA rank {rank}, above the backends' --max-lora-rank"
            f" {max_rank} for `{base_model}`: use `svd` with svd_rank <= {max_rank}, or fewer sources.",
            field="method",
        )
    if importlib.util.find_spec("peft") is None or importlib.util.find_spec("torch") is None:
        raise Unavailable("feature", "Merging needs torch and peft where the gateway runs (the trainer's extras).")
    out = Path(adapters.settings.home) / "adapters" / "merged" / f"{alias}-{int(time.time() * 1000)}"
    out.parent.mkdir(parents=True, exist_ok=True)
    base_path = configs[0].get("base_model_name_or_path") or base_model
    try:
        await asyncio.to_thread(
            merge_adapters,
            base_path,
            [version.weights for version in versions],
            weights,
            request.method,
            out,
            density=request.density,
            svd_rank=request.svd_rank,
        )
    except MergeError as exc:
        raise Invalid("adapter", str(exc), field="method") from exc
    dataset = await asyncio.to_thread(_joined_dataset, versions, out / "dataset.jsonl")
    lineage = {
        "merged_from": [version.name for version in versions],
        "method": request.method,
        "weights": weights,
        "density": request.density,
        "rank": rank,
    }
    return await adapters.register(
        RegisterRequest(
            alias=alias,
            weights=str(out),
            base_model=base_model,
            author=request.author or "merge",
            training_run=lineage,
            dataset=dataset,
        )
    )


def _joined_dataset(versions: list[AdapterVersion], target: Path) -> str | None:
    """The sources' training records in one JSONL (None when no source has a dataset)."""
    lines = []
    for version in versions:
        if version.dataset and Path(version.dataset).is_file():
            lines.extend(line for line in Path(version.dataset).read_text().splitlines() if line.strip())
    if not lines:
        return None
    target.write_text("\n".join(json.dumps(json.loads(line)) for line in lines) + "\n")
    return str(target)
