# The gateway: slim, CPU only, no torch or vLLM (vLLM runs in its own container, vllm/vllm-openai).
# Build from the repository root: docker build -f deploy/docker/gateway.Dockerfile -t driftgate/gateway .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY guards guards
COPY monitor monitor
COPY training training
# Core dependencies and the Kubernetes client (the Helm chart runs training as Jobs): no [vllm], no [train]
# (torch would triple the image).
RUN pip install ".[cluster]" && rm -rf /src

# The default guard models (the Jigsaw toxicity model, the injection classifier) are exported to ONNX here,
# once per image, not at start: every replica then starts without export work or a writable model
# directory (the chart runs a read-only root filesystem), and a broken export fails the build instead of a
# rollout. Configs point guards.*.toxicity.model.path and guards.input.injection.path at these files.
RUN python -c "from guards.jigsaw_export import ensure_jigsaw_model as j; from guards.injection_export import ensure_injection_model as i; j('/opt/driftgate/models/guards'); i('/opt/driftgate/models/guards')"

RUN useradd --uid 10001 --create-home --home-dir /var/lib/driftgate driftgate
USER 10001
WORKDIR /var/lib/driftgate
ENV DRIFTGATE_HOME=/var/lib/driftgate
EXPOSE 8000
ENTRYPOINT ["driftgate"]
CMD ["serve", "--config", "/etc/driftgate/driftgate.yaml"]
