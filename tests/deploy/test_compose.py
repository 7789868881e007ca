"""The compose stack and the Prometheus/Alertmanager configs it mounts, checked by the real tools
(no Docker engine needed: `docker-compose config` only parses and interpolates)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.config import load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose" / "docker-compose.yml"
TOOLS = {"docker-compose": "docker-compose", "promtool": "prometheus", "amtool": "prometheus-alertmanager"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: apt-get install -y {TOOLS[name]}")
    return path


def run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_compose_file_validates() -> None:
    config = yaml.safe_load(run(tool("docker-compose"), "-f", str(COMPOSE), "config"))
    services = config["services"]
    assert set(services) >= {
        "vllm",
        "gateway",
        "trainer",
        "postgres",
        "prometheus",
        "alertmanager",
        "grafana",
        "otel-collector",
        "jaeger",
    }
    assert "--enable-lora" in services["vllm"]["command"]
    assert services["vllm"]["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert services["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert services["gateway"]["depends_on"]["vllm"]["condition"] == "service_healthy"
    # Every bind-mounted file or directory exists (a missing one would be created empty by the engine).
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith("/") and "admin-key" not in source:
                assert Path(source).exists(), source


def test_prometheus_and_alertmanager_configs_pass_their_tools() -> None:
    run(tool("promtool"), "check", "config", str(REPO / "deploy" / "prometheus" / "prometheus.yml"))
    run(tool("amtool"), "check-config", str(REPO / "deploy" / "alertmanager" / "alertmanager.yml"))


def test_the_stacks_gateway_config_loads() -> None:
    env = {"DRIFTGATE_REQUEST_LOG__URL": "postgresql+psycopg://driftgate:pw@postgres:5432/driftgate"}
    settings = load_settings(REPO / "deploy" / "compose" / "driftgate.yaml", env)
    assert settings.models[0].backends == ["http://vllm:8000"]
    assert settings.request_log is not None and "pw@postgres" in settings.request_log.url
    assert settings.tracing.endpoint.startswith("http://otel-collector:4318")


def test_collector_exports_to_jaeger() -> None:
    collector = yaml.safe_load((REPO / "deploy" / "otel" / "collector.yaml").read_text())
    assert collector["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    assert collector["service"]["pipelines"]["traces"]["exporters"] == ["otlp/jaeger"]
