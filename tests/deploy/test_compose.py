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
    # CPU as it is (the vllm-cpu image serves LoRA: deploy/docker/vllm-cpu.Dockerfile's CMD) ...
    assert services["vllm"]["image"].startswith("driftgate/vllm-cpu:") and "deploy" not in services["vllm"]
    assert services["gateway"]["depends_on"]["vllm"]["condition"] == "service_healthy"
    # ... and the official image on a GPU with the override file.
    gpu_file = COMPOSE.with_name("docker-compose.gpu.yml")
    gpu = yaml.safe_load(run(tool("docker-compose"), "-f", str(COMPOSE), "-f", str(gpu_file), "config"))
    vllm = gpu["services"]["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:") and "--enable-lora" in vllm["command"]
    assert vllm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert vllm["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    # Every bind-mounted file or directory exists (a missing one would be created empty by the engine).
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith("/"):
                assert Path(source).exists(), source


def test_prometheus_and_alertmanager_configs_pass_their_tools(tmp_path: Path) -> None:
    # Both tools stat the credential files; the stack mounts them as compose secrets under /run/secrets.
    for source, tool_args in (
        (REPO / "deploy" / "prometheus" / "prometheus.yml", (tool("promtool"), "check", "config")),
        (REPO / "deploy" / "alertmanager" / "alertmanager.yml", (tool("amtool"), "check-config")),
    ):
        text = source.read_text()
        for secret in ("admin-key", "metrics-token"):
            (tmp_path / secret).write_text("dg-" + "x" * 40 + "\n")
            text = text.replace(f"/run/secrets/{secret}", str(tmp_path / secret))
        (tmp_path / "rules").mkdir(exist_ok=True)
        for rule in (source.parent / "rules").glob("*.yml"):
            (tmp_path / "rules" / rule.name).write_text(rule.read_text())
        copy = tmp_path / source.name
        copy.write_text(text)
        run(*tool_args, str(copy))


def test_the_stack_reads_its_keys_from_secret_files() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    settings = load_settings(REPO / "deploy" / "compose" / "driftgate.yaml", {})
    gateway = compose["services"]["gateway"]
    assert set(gateway["secrets"]) == {"admin-key", "metrics-token"}
    assert settings.auth.admin_key_file == "/run/secrets/admin-key"
    assert settings.auth.metrics_token_file == "/run/secrets/metrics-token"
    assert "admin-key" in compose["services"]["alertmanager"]["secrets"]
    assert "metrics-token" in compose["services"]["prometheus"]["secrets"]
    prometheus = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "driftgate"]
    assert job["authorization"]["credentials_file"] == "/run/secrets/metrics-token"
    alertmanager = yaml.safe_load((REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    (hook,) = [r for r in alertmanager["receivers"] if r["name"] == "driftgate-loop"][0]["webhook_configs"]
    assert hook["url"] == "http://gateway:8000/admin/alerts"
    assert hook["http_config"]["authorization"]["credentials_file"] == "/run/secrets/admin-key"
    # Drift on, the loop on: an EmbeddingDrift alert has something to start.
    assert settings.drift.references and settings.drift.adapters and settings.loop is not None


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


def test_the_gateway_queues_training_for_the_trainer_on_their_shared_volume() -> None:
    config = yaml.safe_load(run(tool("docker-compose"), "-f", str(COMPOSE), "config"))
    settings = load_settings(REPO / "deploy" / "compose" / "driftgate.yaml", {})
    assert settings.jobs.runner == "queue"
    trainer = config["services"]["trainer"]
    assert "profiles" not in trainer, "the worker runs with the stack, not only on request"
    command = trainer["command"]
    assert command[0] == "worker" and command[command.index("--workspace") + 1] == settings.jobs.workspace

    def volume_at(service: str, target: str) -> str:
        for volume in config["services"][service]["volumes"]:
            if (volume["target"] if isinstance(volume, dict) else volume.split(":")[1]) == target:
                return volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
        raise AssertionError(f"{service} mounts nothing at {target}")

    # Gateway, trainer and vLLM see the jobs, the loop's data and its adapters at the same path.
    assert {volume_at(s, settings.jobs.workspace) for s in ("gateway", "trainer", "vllm")} == {"shared"}
