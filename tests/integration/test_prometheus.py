"""A real Prometheus scrapes a running gateway; every rule and dashboard expression is checked against it.

The gateway protects /metrics with a scrape token (``auth.metrics_token_file``) and Prometheus presents it
from a file (``authorization: {credentials_file: ...}``), as a deployment should.

Needs Debian's `prometheus` package (scripts/test.sh installs it).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from deploy.grafana.build_dashboards import (
    ALIAS_ALL,
    ALIAS_IS_ALIAS,
    ALIAS_VARIABLE,
    MODEL_IS_ALIAS,
    VARIABLES,
    build,
)
from monitor import metrics
from tests.conftest import free_port, link_shared_models

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules" / "driftgate.yml"
RULE_TESTS = Path(__file__).parent / "prometheus_rules_test.yml"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
SCRAPE_TOKEN = "prometheus-scrape-token-0123456789abcdef"
SCRAPE = {"authorization": f"Bearer {SCRAPE_TOKEN}"}
# A drift alert for an alias with no production version: the loop (on in this gateway) decides to skip it.
DRIFT_ALERT = {
    "version": "4",
    "status": "firing",
    "receiver": "driftgate-loop",
    "groupKey": "{}:{}",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "EmbeddingDrift", "alias": "m", "severity": "warning"},
            "annotations": {},
            "startsAt": "2026-01-01T00:00:00Z",
        }
    ],
}
# Panels that must show data after a little traffic and one drift alert (the others stay empty until drift,
# guards, a loop run's outcome...).
MUST_HAVE_DATA = {
    "Requests per second",
    "Latency p50 / p99 (non-streaming)",
    "Time to first token p50 / p99",
    "Gateway overhead p50 / p99",
    "Tokens per second by alias",
    "Backends",
    "Training jobs by state",
    "Loop decisions by status",
}


def wait_for(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if shutil.which("prometheus") is None:
        pytest.fail("Debian's prometheus package is missing: run scripts/test.sh, which installs it")
    tmp = tmp_path_factory.mktemp("prom")
    upstream_port, gateway_port, prom_port = free_port(), free_port(), free_port()
    scrape_token = tmp / "scrape-token"
    scrape_token.write_text(SCRAPE_TOKEN + "\n")
    config = tmp / "driftgate.yaml"
    link_shared_models(tmp / "home")
    config.write_text(
        f"port: {gateway_port}\nhome: {tmp / 'home'}\nauth: {{metrics_token_file: {scrape_token}}}\n"
        f"models:\n  - name: m\n    backends: ['http://127.0.0.1:{upstream_port}']\n"
        "adapters: {}\nloop: {}\n"  # the closed loop's metrics: decisions, outcomes, training jobs
    )
    prom_config = tmp / "prometheus.yml"
    prom_config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "driftgate",
                        "authorization": {"credentials_file": str(scrape_token)},
                        "static_configs": [{"targets": [f"127.0.0.1:{gateway_port}"]}],
                    }
                ],
            }
        )
    )
    processes = [
        subprocess.Popen([sys.executable, "-m", "tests.fake_upstream", "--port", str(upstream_port)], cwd=REPO),
        subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)], cwd=REPO),
        subprocess.Popen(
            [
                "prometheus",
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        gateway, prometheus = f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{prom_port}"
        wait_for(f"{gateway}/readyz")
        wait_for(f"{prometheus}/-/ready")
        for _ in range(20):
            httpx.post(f"{gateway}/v1/chat/completions", json=CHAT, timeout=10)
            with httpx.stream("POST", f"{gateway}/v1/chat/completions", json={**CHAT, "stream": True}) as response:
                response.read()
            time.sleep(0.1)
        httpx.post(f"{gateway}/v1/chat/completions", json={**CHAT, "model": "nope"}, timeout=10)
        decided = httpx.post(f"{gateway}/admin/alerts", json=DRIFT_ALERT, timeout=10)
        assert decided.status_code == 200, decided.text
        assert [run["status"] for run in decided.json()["runs"]] == ["skipped"]
        time.sleep(3)  # several scrapes after the traffic, so rate() has points on both sides
        yield {"gateway": gateway, "prometheus": prometheus}
    finally:
        for process in processes:
            process.terminate()
            process.wait(20)


def with_samples(families: set[str]) -> set[str]:
    """A family's name and the sample names Prometheus sees for it."""
    suffixes = ("bucket", "count", "sum", "total", "created")
    return families | {f"{name}_{suffix}" for name in families for suffix in suffixes}


def exported_names(gateway: str) -> set[str]:
    text = httpx.get(f"{gateway}/metrics", headers=SCRAPE).text
    return with_samples({family.name for family in text_string_to_metric_families(text)})


def vllm_names() -> set[str]:
    """The metrics the installed vLLM defines, read from its metrics module's source (not imported: slow)."""
    spec = importlib.util.find_spec("vllm")
    assert spec and spec.origin, "vllm is not installed"
    tree = ast.parse((Path(spec.origin).parent / "v1" / "metrics" / "loggers.py").read_text())
    return with_samples(
        {
            keyword.value.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            for keyword in node.keywords
            if keyword.arg == "name"
            and isinstance(keyword.value, ast.Constant)
            and str(keyword.value.value).startswith("vllm:")
        }
    )


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every panel target, with Grafana's variables still in."""
    return [
        (panel["title"], target["expr"])
        for path in build(Path(__file__).parent / "_dashboards")
        for panel in json.loads(path.read_text())["panels"]
        for target in panel.get("targets", [])  # rows have none
    ]


def substitute(expr: str, alias: str = ALIAS_ALL) -> str:
    """What Grafana sends: the rate interval, the textbox values, and the alias picker's choice (All: ALIAS_ALL)."""
    expr = expr.replace("$__rate_interval", "1m").replace(f"${ALIAS_VARIABLE}", alias)
    for name, value in VARIABLES.items():
        expr = expr.replace(f"${name}", value)
    return expr


def dashboard_queries() -> list[tuple[str, str]]:
    return [(title, substitute(expr)) for title, expr in panel_queries()]


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def instant(prometheus: str, expr: str) -> list:
    result = subprocess.run(
        ["promtool", "query", "instant", "-o", "json", prometheus, expr], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, f"{expr}\n{result.stderr}"
    return json.loads(result.stdout)


def test_rules_pass_promtool() -> None:
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_when_they_should() -> None:
    result = subprocess.run(["promtool", "test", "rules", str(RULE_TESTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_gateway_with_its_token(stack: dict) -> None:
    up = instant(stack["prometheus"], 'up{job="driftgate"}')
    assert [float(sample["value"][1]) for sample in up] == [1.0]
    assert httpx.get(f"{stack['gateway']}/metrics").status_code == 401  # so the token is what let it in


@pytest.mark.parametrize(
    ("title", "expr"), [(rule.get("alert") or rule["record"], rule["expr"]) for rule in rules()] + dashboard_queries()
)
def test_every_expression_runs_and_names_only_exported_metrics(stack: dict, title: str, expr: str) -> None:
    exported = exported_names(stack["gateway"])
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    used = set(re.findall(r"\b(driftgate_[a-z0-9_]+)", expr))
    used_recorded = set(re.findall(r"\b(driftgate:[a-z0-9_:]+)", expr))
    used_vllm = set(re.findall(r"\b(vllm:[a-z0-9_:]+)", expr))
    assert used or used_recorded or used_vllm, f"{title}: names no driftgate or vLLM metric"
    assert used <= exported, f"{title}: not exported by the gateway: {used - exported}"
    assert used_recorded <= recorded, f"{title}: no such recording rule: {used_recorded - recorded}"
    assert used_vllm <= vllm_names(), f"{title}: not defined by the installed vLLM: {used_vllm - vllm_names()}"
    samples = instant(stack["prometheus"], expr)
    if title in MUST_HAVE_DATA:
        assert samples, f"{title}: no data after traffic: {expr}"


def test_recording_rules_are_evaluated(stack: dict) -> None:
    time.sleep(2)
    assert instant(stack["prometheus"], "driftgate:request_duration_seconds:p99_5m"), "recording rule has no samples"


def labels_of_gateway_metrics() -> dict[str, tuple[str, ...]]:
    """Each sample name the gateway exports -> its label names, from the metric definitions."""
    defined = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    return {name: m._labelnames for m in defined for name in with_samples({m._name})}


def test_every_panel_on_an_alias_labelled_metric_filters_by_the_alias_variable() -> None:
    labels = labels_of_gateway_metrics()
    for title, expr in panel_queries():
        for name, selector in re.findall(r"\b(driftgate_[a-z0-9_]+)(\{[^}]*\})?", expr):
            if "model" in labels[name]:
                assert MODEL_IS_ALIAS in selector, f"{title}: {name} is not filtered by ${ALIAS_VARIABLE}"
            if "alias" in labels[name]:
                assert ALIAS_IS_ALIAS in selector, f"{title}: {name} is not filtered by ${ALIAS_VARIABLE}"


@pytest.mark.parametrize(
    ("title", "expr"),
    [(title, expr) for title, expr in panel_queries() if title in MUST_HAVE_DATA and f"${ALIAS_VARIABLE}" in expr],
)
def test_choosing_an_alias_shows_its_series_and_only_them(stack: dict, title: str, expr: str) -> None:
    label = "model" if MODEL_IS_ALIAS in expr else "alias"
    seen = {series["metric"][label] for series in instant(stack["prometheus"], substitute(expr))}
    assert seen, f"{title}: no data under All"
    for value in seen:
        chosen = instant(stack["prometheus"], substitute(expr, value))
        assert {series["metric"][label] for series in chosen} == {value}, f"{title}: {value} chosen"
    assert instant(stack["prometheus"], substitute(expr, "not-requested")) == [], f"{title}: ignores the alias"
