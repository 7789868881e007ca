#!/bin/sh
# vLLM's OpenAI server on the baked-in model. `python -m`: the CPU build's `vllm` script looks for the
# distribution name `vllm` and fails. Arguments are vLLM's own (--max-loras, --dtype ...).
set -eu
exec python -m vllm.entrypoints.openai.api_server \
    --model "$(cat /etc/driftgate-model-path)" --served-model-name "$SERVED_MODEL_NAME" \
    --host 0.0.0.0 --port 8000 "$@"
