# The trainer: runs `python -m training.cli run --spec FILE` as a Kubernetes Job or a compose service.
#
#   docker build -f deploy/docker/trainer.Dockerfile -t driftgate/trainer:0.1.0 .                 # CUDA
#   docker build -f deploy/docker/trainer.Dockerfile --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu ...
#
# BASE_IMAGE: any Debian-based image with python3 >= 3.11 and its venv module. torch's CUDA wheels carry
# their own CUDA libraries, so a plain Python base serves GPUs too (the host needs the NVIDIA driver and
# container toolkit); TORCH_INDEX_URL picks the build (CUDA 12.8 by default, .../whl/cpu for CPU only).
# WHEELS: a folder of local wheels pip may use first (empty: none).
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
# layer. torch first, from its index, so `[train]` does not pull a different build.
FROM base AS deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG TORCH_VERSION=2.13.0
ARG WHEELS=
WORKDIR /deps
# pyproject.toml alone, with an empty stand-in for the readme it names: a README edit reinstalls nothing.
COPY pyproject.toml ./
RUN \
    touch README.md \
    && echo "torch==${TORCH_VERSION}" > torch-pin \
    && pip install ${WHEELS:+--find-links "$WHEELS"} --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple -r torch-pin \
    && pip install ${WHEELS:+--find-links "$WHEELS"} --constraint torch-pin ".[train]" \
    && pip uninstall --yes driftgate && rm -rf /deps

FROM deps AS venv
COPY --from=wheel /dist /dist
RUN pip install --no-deps /dist/*.whl && rm -rf /dist

FROM base
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="driftgate trainer" \
      org.opencontainers.image.description="LoRA/QLoRA/DoRA/DPO training runs for driftgate's closed loop" \
      org.opencontainers.image.source="https://github.com/driftgate/driftgate" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=venv /opt/venv /opt/venv
RUN useradd --uid 10001 --user-group --create-home --home-dir /var/lib/driftgate driftgate
USER 10001
WORKDIR /var/lib/driftgate
# Named volumes mounted here (compose's `shared`) take this directory's owner on first use: uid 10001 writes.
RUN mkdir -p /var/lib/driftgate/shared
# The general-replay set every run reads ships inside the package (a missing one fails the build).
RUN python -c "from training.prepare import GENERAL_PATH; assert GENERAL_PATH.is_file(), GENERAL_PATH"
ENTRYPOINT ["python", "-m", "training.cli"]
CMD ["--help"]
