"""Loading the base model with a fresh peft adapter for one method (LoRA, DoRA, QLoRA).

QLoRA needs bitsandbytes' 4-bit NF4 kernels. On CUDA they are a given; on a CPU they depend on the
bitsandbytes build, so :func:`cpu_4bit_support` tries them on a tiny layer instead of assuming either way.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from training.config import LoraSettings, Method

if TYPE_CHECKING:
    from peft import PeftModel

log = logging.getLogger(__name__)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_4bit_support() -> str | None:
    """None when a 4-bit NF4 layer (double-quantized) runs forward and backward here, else why not."""
    try:
        import bitsandbytes as bnb

        layer = bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=torch.float32, quant_type="nf4")
        layer.weight = bnb.nn.Params4bit(
            torch.randn(64, 64), requires_grad=False, quant_type="nf4", compress_statistics=True
        )
        layer = layer.to("cpu")  # quantizes the weight
        x = torch.randn(2, 64, requires_grad=True)
        layer(x).sum().backward()
        return None if x.grad is not None else "no gradient through the 4-bit layer"
    except Exception as exc:  # any failure (missing package, no CPU kernels) means: fall back
        return f"{type(exc).__name__}: {exc}"


def resolve_method(method: Method, where: torch.device) -> tuple[Method, str]:
    """The method that will actually run, and a note for the run record when it differs from the request."""
    if method != "qlora" or where.type == "cuda":
        return method, ""
    reason = cpu_4bit_support()
    if reason is None:
        return "qlora", "QLoRA on CPU: bitsandbytes' CPU backend runs 4-bit NF4 here"
    return "lora", f"QLoRA needs bitsandbytes 4-bit kernels, unavailable on this CPU ({reason}): training LoRA"


def adapter_rank(adapter_dir: str) -> int:
    """The LoRA rank a saved peft adapter was trained at (a warm start must keep it)."""
    import json
    from pathlib import Path

    return int(json.loads((Path(adapter_dir) / "adapter_config.json").read_text())["r"])


def load(
    base: str,
    method: Method,
    lora: LoraSettings,
    where: torch.device,
    gradient_checkpointing: bool,
    start_adapter: str | None = None,
) -> PeftModel:
    """The base model wrapped with a trainable adapter named ``default``: fresh, or ``start_adapter``'s weights
    (warm start: loaded trainable, so training continues from what production learned)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, object] = {"dtype": torch.float32 if where.type == "cpu" else torch.bfloat16}
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=kwargs["dtype"],
        )
        kwargs["device_map"] = {"": where.index or 0} if where.type == "cuda" else {"": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    else:
        model.to(where)
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
    if start_adapter is not None:
        return PeftModel.from_pretrained(model, start_adapter, is_trainable=True)
    config = PeftLoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        use_dora=method == "dora",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def optimizer(model: PeftModel, method: Method, learning_rate: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if method == "qlora":
        import bitsandbytes as bnb

        # Paged: optimizer state moves to host memory under GPU memory pressure instead of failing.
        return bnb.optim.PagedAdamW(params, lr=learning_rate, weight_decay=0.0)
    return torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
