"""LoRA adapters: versions and aliases in a registry, resolved per request, hot-swapped on the vLLM backends."""
