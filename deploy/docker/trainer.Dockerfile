# The trainer: runs `python -m training.cli run --spec FILE` as a Kubernetes Job or compose service.
# Build from the repository root: docker build -f deploy/docker/trainer.Dockerfile -t driftgate/trainer .
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, from the CUDA 12.4 index, so `.[train]` does not pull a different build.
RUN pip install torch --index-url https://download.pytorch.org/whl/cu124

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY guards guards
COPY monitor monitor
COPY training training
# [train]: transformers, peft, bitsandbytes (4-bit QLoRA), accelerate.
RUN pip install ".[train]" && rm -rf /src

RUN useradd --uid 10001 --create-home trainer
USER 10001
WORKDIR /home/trainer
ENTRYPOINT ["python", "-m", "training.cli"]
CMD ["--help"]
