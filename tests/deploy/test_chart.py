"""helm/driftgate rendered by Helm's Go engine (tests/deploy/helm_render.py) for each documented value
combination, and every object checked: Kubernetes schemas, names, cross-references, probes, RBAC."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes_validate import validate

from deploy.grafana.build_dashboards import build as build_dashboards
from gateway.config import load_settings
from tests.deploy.helm_render import CHART, helm, render, render_files
from training.k8s_jobs import REQUIRED_RULES

REPO = CHART.parents[1]
K8S_VERSION = "1.30.0"
DB = {"database": {"url": "postgresql+psycopg://driftgate:pw@db.example:5432/driftgate"}}
# The combinations docs/deploy.md documents.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "external-db": DB,
    "existing-secrets": {
        "database": {"existingSecret": "dg-db", "existingSecretKey": "url"},
        "gateway": {"keys": {"existingSecret": "dg-keys"}},
    },
    "postgresql-dependency": {"postgresql": {"enabled": True, "auth": {"password": "s3cret/+"}}},
    "several-models": {
        **DB,
        "vllm": {
            "models": [
                {"name": "smollm2", "model": "HuggingFaceTB/SmolLM2-135M-Instruct"},
                {
                    "name": "qwen-7b",
                    "model": "Qwen/Qwen2.5-7B-Instruct",
                    "tensorParallelSize": 2,
                    "gpus": 2,
                    "maxLoraRank": 32,
                    "replicas": 2,
                    "extraArgs": ["--enforce-eager"],
                },
            ]
        },
    },
    "hpa-off": {
        **DB,
        "gateway": {
            "autoscaling": {"enabled": False},
            "replicas": 3,
            "podDisruptionBudget": {"enabled": False},
            "keys": {"adminKey": "k"},
        },
    },
    "object-storage-adapters": {
        **DB,
        "adapters": {"storage": "objectStorage", "objectStorage": {"uri": "s3://bucket/adapters"}},
    },
    "minimal": {
        **DB,
        "training": {"enabled": False},
        "tracing": {"enabled": True},
        "monitoring": {
            "serviceMonitor": {"enabled": False},
            "prometheusRule": {"enabled": False},
            "dashboards": {"enabled": False},
        },
    },
}
CRDS = {"ServiceMonitor", "PrometheusRule", "AlertmanagerConfig"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
# Objects the Bitnami subchart creates; it is not vendored here (no network), so it does not render.
FROM_DEPENDENCY = {("Service", "dg-postgresql")}


@pytest.fixture(scope="module", params=list(VALUE_SETS), ids=list(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(VALUE_SETS[request.param])


def models_of(value_set: str) -> list[dict[str, Any]]:
    return (VALUE_SETS[value_set].get("vllm") or {"models": [{"name": "smollm2"}]})["models"]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_every_object_is_valid_kubernetes(rendered) -> None:
    _, objects = rendered
    for obj in objects:
        name = obj["metadata"]["name"]
        assert DNS_SUBDOMAIN.match(name) and len(name) <= 253, name
        if obj["kind"] in ("Service", "Deployment"):
            assert DNS_LABEL.match(name) and len(name) <= 63, name
        if obj["kind"] in CRDS:
            assert obj["apiVersion"].startswith("monitoring.coreos.com/v1") and obj["spec"]
        else:
            validate(obj, K8S_VERSION, strict=True)
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), "duplicate objects"


def test_every_reference_resolves(rendered) -> None:
    name, objects = rendered
    present = {(o["kind"], o["metadata"]["name"]) for o in objects} | FROM_DEPENDENCY
    external = {("Secret", "dg-db"), ("Secret", "dg-keys")} if name == "existing-secrets" else set()
    for obj in objects:
        for ref in references(obj):
            assert ref in present | external, f"{obj['kind']}/{obj['metadata']['name']} references missing {ref}"


def references(obj: dict[str, Any]) -> list[tuple[str, str]]:
    refs: list[tuple[str, str]] = []
    pod = (obj.get("spec") or {}).get("template", {}).get("spec")
    if pod:
        if "serviceAccountName" in pod:
            refs.append(("ServiceAccount", pod["serviceAccountName"]))
        else:  # the namespace's default account: fine only without an API token
            assert pod.get("automountServiceAccountToken") is False, obj["metadata"]["name"]
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                refs.append(("ConfigMap", volume["configMap"]["name"]))
            if "secret" in volume:
                refs.append(("Secret", volume["secret"]["secretName"]))
            if "persistentVolumeClaim" in volume:
                refs.append(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
        for container in pod["containers"]:
            for env in container.get("env", []):
                if "secretKeyRef" in env.get("valueFrom", {}):
                    refs.append(("Secret", env["valueFrom"]["secretKeyRef"]["name"]))
                if env["name"] in ("K8S_JOBS_SERVICE_ACCOUNT", "K8S_JOBS_SHARED_CLAIM"):
                    kind = "ServiceAccount" if env["name"].endswith("ACCOUNT") else "PersistentVolumeClaim"
                    refs.append((kind, env["value"]))
    if obj["kind"] == "ConfigMap" and "driftgate.yaml" in obj.get("data", {}):
        # Backends named in the gateway's config must be Services of this release.
        for route in yaml.safe_load(obj["data"]["driftgate.yaml"])["models"]:
            for backend in route["backends"]:
                refs.append(("Service", re.match(r"http://([^:/]+)", backend)[1]))
    if obj["kind"] == "Secret" and "database-url" in obj.get("stringData", {}):
        host = re.search(r"@([^:/]+)", obj["stringData"]["database-url"])[1]
        if not host.endswith(".example"):
            refs.append(("Service", host))
    if obj["kind"] == "HorizontalPodAutoscaler":
        refs.append((obj["spec"]["scaleTargetRef"]["kind"], obj["spec"]["scaleTargetRef"]["name"]))
    if obj["kind"] == "RoleBinding":
        refs.append(("Role", obj["roleRef"]["name"]))
        refs += [(s["kind"], s["name"]) for s in obj["subjects"]]
    return refs


def test_selectors_match_their_pods(rendered) -> None:
    _, objects = rendered
    deployments = by_kind(objects, "Deployment")
    for service in by_kind(objects, "Service"):
        selector = service["spec"]["selector"].items()
        assert any(selector <= d["spec"]["template"]["metadata"]["labels"].items() for d in deployments)
    for deployment in deployments:
        assert (
            deployment["spec"]["selector"]["matchLabels"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )


def test_gateway_probes_config_and_settings(rendered) -> None:
    name, objects = rendered
    gateway = next(d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "dg-driftgate-gateway")
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]
    assert ("replicas" in gateway["spec"]) == (name == "hpa-off")
    # The gateway accepts the rendered file plus the environment the pod gets (Secrets filled in).
    config = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "dg-driftgate-config")
    env = {e["name"]: e.get("value", "postgresql+psycopg://u:p@h/d") for e in container["env"]}
    path = Path(tempfile.mkdtemp()) / "driftgate.yaml"
    path.write_text(config["data"]["driftgate.yaml"])
    settings = load_settings(path, env)
    assert settings.request_log is not None and settings.request_log.url == "postgresql+psycopg://u:p@h/d"
    assert settings.adapters is not None and settings.adapters.url
    assert [m.name for m in settings.models] == [m["name"] for m in models_of(name)]
    # The admin key and scrape token are read from the keys Secret, mounted where the config says.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert settings.auth.admin_key_file == f"{mounts['keys']}/admin-key"
    assert settings.auth.metrics_token_file == f"{mounts['keys']}/metrics-token"
    keys = next(v for v in gateway["spec"]["template"]["spec"]["volumes"] if v["name"] == "keys")
    secret = keys["secret"]["secretName"]
    assert secret == ("dg-keys" if name == "existing-secrets" else "dg-driftgate-keys")
    if name != "existing-secrets":
        made = next(s for s in by_kind(objects, "Secret") if s["metadata"]["name"] == secret)
        assert set(made["stringData"]) == {"admin-key", "metrics-token"}
        # Given in values ("hpa-off"), or generated: a random token, never empty.
        given = name == "hpa-off"
        assert made["stringData"]["admin-key"] == "k" if given else len(made["stringData"]["admin-key"]) > 40
        assert len(made["stringData"]["metrics-token"]) > 40
    # Drift watches adapter aliases and the loop is on wherever training runs.
    assert settings.drift.adapters
    assert (settings.loop is not None) == (name != "minimal")


def test_drift_alerts_are_routed_to_the_gateway_with_the_admin_key() -> None:
    objects = render(DB)
    (route,) = by_kind(objects, "AlertmanagerConfig")
    assert route["spec"]["route"]["matchers"] == [{"name": "alertname", "value": "EmbeddingDrift", "matchType": "="}]
    (webhook,) = route["spec"]["receivers"][0]["webhookConfigs"]
    assert webhook["url"] == "http://dg-driftgate-gateway.ml.svc:8000/admin/alerts"
    assert webhook["httpConfig"]["authorization"]["credentials"] == {"name": "dg-driftgate-keys", "key": "admin-key"}
    (monitor,) = by_kind(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["authorization"]["credentials"]["key"] == "metrics-token"
    (test_pod,) = [p for p in by_kind(objects, "Pod") if "helm.sh/hook" in p["metadata"].get("annotations", {})]
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "/v1/models" in test_pod["spec"]["containers"][0]["args"][0]


@pytest.mark.parametrize("value_set", ["external-db", "existing-secrets"])
def test_notes_tell_the_operator_how_to_get_in(value_set: str) -> None:
    """NOTES.txt reads the admin key from the Secret the gateway mounts, and forwards to its Service's port."""
    values = VALUE_SETS[value_set]
    notes = render_files(values)["driftgate/templates/NOTES.txt"]
    objects = render(values)
    (gateway,) = [d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "dg-driftgate-gateway"]
    keys = next(v for v in gateway["spec"]["template"]["spec"]["volumes"] if v["name"] == "keys")
    secret = keys["secret"]["secretName"]
    assert f"kubectl -n ml get secret {secret} -o jsonpath='{{.data.admin-key}}' | base64 -d" in notes, notes
    assert ("generated at install" in notes) == (value_set != "existing-secrets"), notes
    (service,) = [s for s in by_kind(objects, "Service") if s["metadata"]["name"] == "dg-driftgate-gateway"]
    port = service["spec"]["ports"][0]["port"]
    assert f"port-forward svc/dg-driftgate-gateway 8000:{port}" in notes, notes
    # The console's sessions are in the database: any replica serves a login, so no sticky sessions.
    assert "http://localhost:8000/console" in notes and "sessionAffinity" not in service["spec"], notes
    assert "helm test dg -n ml" in notes and "Loop: on" in notes, notes


def test_hpa_scales_on_cpu_and_in_flight_requests(rendered) -> None:
    name, objects = rendered
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    if name == "hpa-off":
        assert not hpas and not by_kind(objects, "PodDisruptionBudget")
        return
    metrics = hpas[0]["spec"]["metrics"]
    assert {m["type"] for m in metrics} == {"Resource", "Pods"}
    assert metrics[1]["pods"]["metric"]["name"] == "driftgate_backend_outstanding_requests"


def test_vllm_deployments_serve_lora(rendered) -> None:
    name, objects = rendered
    models = models_of(name)
    vllm = [d for d in by_kind(objects, "Deployment") if "-vllm-" in d["metadata"]["name"]]
    assert len(vllm) == len(models)
    for deployment, model in zip(
        sorted(vllm, key=lambda d: d["metadata"]["name"]), sorted(models, key=lambda m: m["name"]), strict=True
    ):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        args = container["args"]
        assert "--enable-lora" in args
        assert f"--tensor-parallel-size={model.get('tensorParallelSize', 1)}" in args
        assert f"--max-lora-rank={model.get('maxLoraRank', 64)}" in args
        assert {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"} in container["env"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == model.get("gpus", 1)
        sidecars = deployment["spec"]["template"]["spec"]["containers"][1:]
        assert bool(sidecars) == (name == "object-storage-adapters")


def test_role_grants_exactly_what_the_job_runner_calls(rendered) -> None:
    name, objects = rendered
    roles = by_kind(objects, "Role")
    if name == "minimal":
        assert not roles and not by_kind(objects, "RoleBinding")
        return
    granted = {
        (g, r, v)
        for rule in roles[0]["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert granted == {(g, r, v) for g, r, verbs in REQUIRED_RULES for v in verbs}
    binding = by_kind(objects, "RoleBinding")[0]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "dg-driftgate-gateway", "namespace": "ml"}]
    trainer = next(s for s in by_kind(objects, "ServiceAccount") if s["metadata"]["name"].endswith("-trainer"))
    assert trainer["automountServiceAccountToken"] is False


def test_monitoring_objects_come_from_the_single_sources(rendered) -> None:
    name, objects = rendered
    if name == "minimal":
        assert not by_kind(objects, "ServiceMonitor") and not by_kind(objects, "PrometheusRule")
        return
    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "rules" / "driftgate.yml").read_text())
    assert by_kind(objects, "PrometheusRule")[0]["spec"] == rules
    dashboards = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["labels"].get("grafana_dashboard") == "1"]
    sources = {p.name: json.loads(p.read_text()) for p in (REPO / "deploy" / "grafana" / "dashboards").glob("*.json")}
    assert {k: json.loads(v) for c in dashboards for k, v in c["data"].items()} == sources


def test_chart_copies_equal_their_sources() -> None:
    """Helm's .Files cannot read outside the chart: helm/driftgate/files/ holds copies, kept equal here."""
    pairs = [(REPO / "deploy/prometheus/rules/driftgate.yml", CHART / "files/rules/driftgate.yml")]
    pairs += [(p, CHART / "files/dashboards" / p.name) for p in (REPO / "deploy/grafana/dashboards").glob("*.json")]
    assert sorted(p.name for p in (CHART / "files/dashboards").glob("*.json")) == sorted(s.name for s, _ in pairs[1:])
    for source, copy in pairs:
        assert copy.read_bytes() == source.read_bytes(), f"cp {source.relative_to(REPO)} {copy.relative_to(REPO)}"


def test_dashboards_are_what_their_builder_writes(tmp_path: Path) -> None:
    """deploy/grafana/dashboards/ is generated: an edit to build_dashboards.py must be followed by a rebuild."""
    built = {path.name: path.read_bytes() for path in build_dashboards(tmp_path)}
    committed = {p.name: p.read_bytes() for p in (REPO / "deploy/grafana/dashboards").glob("*.json")}
    assert built.keys() == committed.keys()
    for name, content in built.items():
        assert committed[name] == content, f"{name} is stale: python deploy/grafana/build_dashboards.py"


def test_helm_lint_finds_only_the_missing_vendored_dependency() -> None:
    report = (
        helm().lint(str(CHART), values=DB) if "values" in helm().lint.__code__.co_varnames else helm().lint(str(CHART))
    )
    errors = [m for m in report["messages"] if m["severity"] >= 2]
    assert all("missing these dependencies: postgresql" in m["error"] for m in errors), errors


BAD_VALUES = {
    "negative replicas": {"gateway": {"replicas": -1}},
    "replicas as a string": {"gateway": {"replicas": "two"}},
    "unknown gateway key": {"gateway": {"replica": 2}},
    "unknown top-level key": {"gatway": {}},
    "bad model name": {"vllm": {"models": [{"name": "Big_Model", "model": "x"}]}},
    "model without model": {"vllm": {"models": [{"name": "a"}]}},
    "zero tensor parallel": {"vllm": {"models": [{"name": "a", "model": "x", "tensorParallelSize": 0}]}},
    "unsupported lora rank": {"vllm": {"models": [{"name": "a", "model": "x", "maxLoraRank": 100}]}},
    "not a postgres url": {"database": {"url": "mysql://x"}},
    "sample ratio above 1": {"tracing": {"sampleRatio": 2}},
    "bad storage kind": {"adapters": {"storage": "nfs"}},
    "cpu percent above 100": {"gateway": {"autoscaling": {"targetCPUUtilizationPercentage": 150}}},
}


@pytest.mark.parametrize("values", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_schema_rejects_bad_values(values: dict[str, Any]) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    merged = merge(yaml.safe_load((CHART / "values.yaml").read_text()), values)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(merged, schema)
    # And Helm itself refuses to render them.
    with pytest.raises(helm().HelmError):
        render(values)


def test_schema_accepts_defaults_and_every_documented_set() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for values in VALUE_SETS.values():
        jsonschema.validate(merge(defaults, values), schema)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "cluster mode needs PostgreSQL"),
        ({"postgresql": {"enabled": True}}, "postgresql.auth.password is required"),
        (
            {**DB, "vllm": {"models": [{"name": "a", "model": "x", "tensorParallelSize": 4, "gpus": 2}]}},
            "must be at least tensorParallelSize",
        ),
        ({**DB, "adapters": {"storage": "objectStorage"}}, "adapters.objectStorage.uri is required"),
    ],
    ids=["no-database", "no-password", "too-few-gpus", "no-uri"],
)
def test_render_fails_with_a_clear_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm().HelmError, match=re.escape(message)):
        render(values)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's values merge: maps merge, everything else (lists included) replaces."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
