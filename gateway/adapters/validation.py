"""Checks on a peft adapter before it is registered: what vLLM would refuse at load time, refused at the door.

Only a directory the gateway can read is accepted: in cluster mode adapters live on storage that the
gateway and the vLLM pods mount at the same path, so what is checked here is what vLLM will load.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from gateway.config import ModelRoute
from gateway.domain_errors import Invalid
from gateway.host.model_pull import MARKER

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def invalid_adapter(message: str) -> Invalid:
    return Invalid("adapter", message, field="weights")


def check_adapter(weights: str, route: ModelRoute, max_lora_rank: int) -> None:
    """Raise :class:`~gateway.domain_errors.Invalid` unless ``weights`` is a LoRA adapter ``route``'s backends load."""
    if "://" in weights:
        raise invalid_adapter(f"`{weights}` is a URI; give a directory path that the gateway and vLLM both mount.")
    directory = Path(weights)
    try:
        config = json.loads((directory / "adapter_config.json").read_text())
    except FileNotFoundError as exc:
        raise invalid_adapter(f"`{weights}` is not a peft adapter: it has no adapter_config.json.") from exc
    except (OSError, ValueError) as exc:
        raise invalid_adapter(f"`{weights}/adapter_config.json` cannot be read as JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        found = config.get("peft_type") if isinstance(config, dict) else None
        raise invalid_adapter(f"`{weights}` is a {found or 'non-peft'} adapter; only LoRA adapters can be served.")
    if config.get("use_dora"):
        raise invalid_adapter(
            f"`{weights}` is a DoRA adapter (use_dora): vLLM serves plain LoRA only. Merge it into the base model"
            " (peft's merge_and_unload) and serve that as a model, or train it with --method lora."
        )
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise invalid_adapter(f"`{weights}` has no weights ({' or '.join(WEIGHT_FILES)}).")
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise invalid_adapter(f"`{weights}` has no valid LoRA rank `r` ({rank!r}).")
    if rank > max_lora_rank:
        raise invalid_adapter(
            f"`{weights}` has LoRA rank {rank}, above the backends' --max-lora-rank {max_lora_rank} for `{route.name}`."
        )
    if not config.get("target_modules"):
        raise invalid_adapter(f"`{weights}` names no target_modules.")
    base = config.get("base_model_name_or_path")
    if base and not same_model(str(base), route_model_names(route)):
        raise invalid_adapter(
            f"`{weights}` was trained on `{base}`, and `{route.name}` serves"
            f" {', '.join(f'`{name}`' for name in sorted(route_model_names(route)))}: register it for its own base,"
            f" or, if `{route.name}` does serve that model under another name, say so with `base_model: {base}`"
            " on its route in the config."
        )


def route_model_names(route: ModelRoute) -> set[str]:
    """Every name ``route``'s model goes by: public name, vLLM's served name, and the operator's ``base_model``."""
    return {name for name in (route.name, route.upstream_model, route.base_model) if name}


def same_model(base: str, names: set[str]) -> bool:
    """Whether an adapter's ``base_model_name_or_path`` is the model known by ``names``.

    Names are compared by what they end in (``HuggingFaceTB/SmolLM2-135M-Instruct``, a local copy at
    ``/models/SmolLM2-135M-Instruct`` and the served name ``SmolLM2-135M-Instruct`` are one model); a local
    directory also answers to the Hub id it was copied from (its config.json's ``_name_or_path``, or
    driftgate's pull record).
    """
    ours = {_last_part(alias) for name in names for alias in _aliases(name)}
    return any(_last_part(alias) in ours for alias in _aliases(base))


def _aliases(name: str) -> set[str]:
    """``name`` itself, plus the Hub ids a local model directory of that name records."""
    found = {name}
    directory = Path(name)
    # driftgate's record of a pulled model, then transformers' own.
    for record, field in ((MARKER, "hub_id"), ("config.json", "_name_or_path")):
        try:
            value = json.loads((directory / record).read_text()).get(field)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, str) and value:
            found.add(value)
    return found


def _last_part(name: str) -> str:
    return PurePosixPath(name.rstrip("/")).name.lower()
