"""Build driftgate's Grafana dashboards as code: ``python deploy/grafana/build_dashboards.py``.

Plain dictionaries rather than grafana-foundation-sdk: a dashboard here is a list of (title, queries)
and the JSON model Grafana imports is stable; one small builder keeps every panel's PromQL reviewable in
one place and lets tests run each expression against a real Prometheus.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

OUTPUT = Path(__file__).parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Dashboard variables and the values tests substitute for them.
VARIABLES = {"cost_per_1k_tokens": "0.0005"}
# The alias/model picker: every name clients request (a base model or an alias) as the gateway labels its
# requests. Multi-value; "All" sends the regex `.*` (not a list of the values seen), so aliases with drift or
# loop series but no requests yet still show.
ALIAS_VARIABLE = "alias"
ALIAS_ALL = ".*"
ALIAS_VALUES = "label_values(driftgate_requests_total, model)"
# Label matchers for the variable: request metrics label the requested name `model`, adapter, drift and loop
# metrics label it `alias` (the same names).
MODEL_IS_ALIAS = f'model=~"${ALIAS_VARIABLE}"'
ALIAS_IS_ALIAS = f'alias=~"${ALIAS_VARIABLE}"'
# vLLM's own metrics (vllm 0.32, vllm/v1/metrics/loggers.py) label the served model `model_name`; the
# gateway's aliases are not among them, so the vLLM row is not filtered by the alias variable.
VLLM_NOTE = "From vLLM's own /metrics (the `vllm` scrape job), per served model; not filtered by the alias variable."


@dataclass
class Panel:
    title: str
    queries: dict[str, str]  # legend -> PromQL
    unit: str = "short"
    description: str = ""
    thresholds: list[float] = field(default_factory=list)


@dataclass
class Row:
    """A collapsible row header: the panels after it, up to the next row, sit under it."""

    title: str


def quantile(q: float, metric: str, by: str = "model", selector: str = "") -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{selector}[$__rate_interval])))"


def by_model(q: float, metric: str, *matchers: str) -> str:
    """A quantile per requested name, only for the names the alias variable selects."""
    return quantile(q, metric, selector="{" + ", ".join([MODEL_IS_ALIAS, *matchers]) + "}")


DASHBOARDS: dict[str, tuple[str, list[Panel | Row]]] = {
    "driftgate-overview": (
        "driftgate: traffic, latency and tokens",
        [
            Panel(
                "Requests per second",
                {
                    "{{model}} {{status}}": f"sum by (model, status) (rate(driftgate_requests_total{{{MODEL_IS_ALIAS}}}[$__rate_interval]))"
                },
                "reqps",
            ),
            Panel(
                "Error ratio (5xx)",
                {
                    "{{model}}": f'sum by (model) (rate(driftgate_requests_total{{{MODEL_IS_ALIAS}, status=~"5.."}}[$__rate_interval])) / clamp_min(sum by (model) (rate(driftgate_requests_total{{{MODEL_IS_ALIAS}}}[$__rate_interval])), 1e-9)'
                },
                "percentunit",
                thresholds=[0.05],
            ),
            Panel(
                "Latency p50 / p99 (non-streaming)",
                {
                    "p50 {{model}}": by_model(0.5, "driftgate_request_duration_seconds", 'stream="false"'),
                    "p99 {{model}}": by_model(0.99, "driftgate_request_duration_seconds", 'stream="false"'),
                },
                "s",
            ),
            Panel(
                "Time to first token p50 / p99",
                {
                    "p50 {{model}}": by_model(0.5, "driftgate_time_to_first_token_seconds"),
                    "p99 {{model}}": by_model(0.99, "driftgate_time_to_first_token_seconds"),
                },
                "s",
            ),
            Panel(
                "Gateway overhead p50 / p99",
                {
                    "p50 {{route}}": quantile(0.5, "driftgate_overhead_seconds", by="route"),
                    "p99 {{route}}": quantile(0.99, "driftgate_overhead_seconds", by="route"),
                },
                "s",
                "Time in driftgate's own code per request, upstream wait excluded.",
            ),
            Panel(
                "Tokens per second by alias",
                {
                    "{{model}} {{direction}}": f"sum by (model, direction) (rate(driftgate_tokens_total{{{MODEL_IS_ALIAS}}}[$__rate_interval]))"
                },
            ),
            Panel(
                "Cost per hour by alias",
                {
                    "{{model}}": f"sum by (model) (rate(driftgate_tokens_total{{{MODEL_IS_ALIAS}}}[$__rate_interval])) * 3600 / 1000 * $cost_per_1k_tokens"
                },
                "currencyUSD",
                "Tokens times the dashboard's cost per 1k tokens variable.",
            ),
            Panel(
                "Backends",
                {
                    "up {{backend}}": "max by (backend) (driftgate_backend_up)",
                    "in flight {{backend}}": "sum by (backend) (driftgate_backend_outstanding_requests)",
                },
            ),
            Panel(
                "Upstream errors and retries",
                {
                    "{{backend}} {{kind}}": "sum by (backend, kind) (rate(driftgate_upstream_errors_total[$__rate_interval]))",
                    "retries {{backend}}": "sum by (backend) (rate(driftgate_upstream_retries_total[$__rate_interval]))",
                },
                "ops",
            ),
            Row("vLLM"),
            Panel(
                "vLLM requests running / waiting",
                {
                    "running {{model_name}}": "sum by (model_name) (vllm:num_requests_running)",
                    "waiting {{model_name}}": "sum by (model_name) (vllm:num_requests_waiting)",
                },
                description=f"Requests in the engine's batches and in its queue. {VLLM_NOTE}",
            ),
            Panel(
                "vLLM KV-cache usage",
                {"{{model_name}} {{instance}}": "max by (model_name, instance) (vllm:kv_cache_usage_perc)"},
                "percentunit",
                f"Share of each replica's KV-cache blocks in use; near 1, requests wait or are preempted. {VLLM_NOTE}",
                thresholds=[0.9],
            ),
            Panel(
                "vLLM time to first token p50 / p99",
                {
                    "p50 {{model_name}}": quantile(0.5, "vllm:time_to_first_token_seconds", by="model_name"),
                    "p99 {{model_name}}": quantile(0.99, "vllm:time_to_first_token_seconds", by="model_name"),
                },
                "s",
                f"Inside the engine; the gateway's own panel above adds the network and driftgate's time. {VLLM_NOTE}",
            ),
            Panel(
                "vLLM end-to-end request latency p50 / p99",
                {
                    "p50 {{model_name}}": quantile(0.5, "vllm:e2e_request_latency_seconds", by="model_name"),
                    "p99 {{model_name}}": quantile(0.99, "vllm:e2e_request_latency_seconds", by="model_name"),
                },
                "s",
                VLLM_NOTE,
            ),
            Panel(
                "vLLM tokens per second",
                {
                    "prompt {{model_name}}": "sum by (model_name) (rate(vllm:prompt_tokens_total[$__rate_interval]))",
                    "generation {{model_name}}": "sum by (model_name) "
                    "(rate(vllm:generation_tokens_total[$__rate_interval]))",
                },
                description=VLLM_NOTE,
            ),
            Panel(
                "vLLM preemptions",
                {"{{model_name}}": "sum by (model_name) (rate(vllm:num_preemptions_total[$__rate_interval]))"},
                "ops",
                f"Requests evicted from the batch for lack of KV-cache room (recomputed later). {VLLM_NOTE}",
            ),
            Panel(
                "vLLM LoRA adapters running / waiting",
                {
                    "{{instance}} running: {{running_lora_adapters}} waiting: {{waiting_lora_adapters}}": "topk by "
                    "(instance) (1, vllm:lora_requests_info) > bool 0"
                },
                description="vLLM keeps one series per set of adapters it has seen, valued at the time it last saw "
                "it: the newest per replica is the set in use now (1 while it is). Compare 'Adapter versions "
                f"serving each alias' on the quality dashboard. {VLLM_NOTE}",
            ),
        ],
    ),
    "driftgate-quality": (
        "driftgate: guards, drift, adapters, the request log and the closed loop",
        [
            Panel(
                "Guard actions",
                {
                    "{{guard}} {{stage}} {{action}}": "sum by (guard, stage, action) (rate(driftgate_guard_decisions_total[$__rate_interval]))"
                },
                "ops",
            ),
            Panel(
                "Drift score by alias, with its threshold",
                {
                    "score {{alias}}": f"max by (alias) (driftgate_drift_score{{{ALIAS_IS_ALIAS}}})",
                    "threshold {{alias}}": f"max by (alias) (driftgate_drift_threshold{{{ALIAS_IS_ALIAS}}})",
                },
            ),
            Panel("Drift confirmed", {"{{alias}}": f"max by (alias) (driftgate_drift_confirmed{{{ALIAS_IS_ALIAS}}})"}),
            Panel(
                "Adapter versions serving each alias",
                {
                    "{{alias}} {{version}} {{stage}}": f"max by (alias, version, stage) (driftgate_adapter_version_info{{{ALIAS_IS_ALIAS}}})"
                },
                description="1 while a version serves its alias (production or canary): promotions and rollbacks over time.",
            ),
            Panel(
                "Requests by adapter version",
                {
                    "{{alias}} {{version}}": f"sum by (alias, version) (rate(driftgate_adapter_requests_total{{{ALIAS_IS_ALIAS}}}[$__rate_interval]))"
                },
                "reqps",
            ),
            Panel(
                "Adapter swaps and failures",
                {
                    "{{alias}} {{kind}}": f"sum by (alias, kind) (increase(driftgate_adapter_swaps_total{{{ALIAS_IS_ALIAS}}}[1h]))",
                    "failed {{alias}} {{kind}}": f"sum by (alias, kind) (increase(driftgate_adapter_failures_total{{{ALIAS_IS_ALIAS}}}[1h]))",
                },
            ),
            Panel(
                "Adapter load time p50 / p99",
                {
                    "p50": "histogram_quantile(0.5, sum by (le) (rate(driftgate_adapter_load_seconds_bucket[$__rate_interval])))",
                    "p99": "histogram_quantile(0.99, sum by (le) (rate(driftgate_adapter_load_seconds_bucket[$__rate_interval])))",
                },
                "s",
            ),
            Panel(
                "Drift windows by verdict",
                {
                    "{{alias}} {{verdict}}": f"sum by (alias, verdict) (increase(driftgate_drift_windows_total{{{ALIAS_IS_ALIAS}}}[1h]))"
                },
            ),
            Panel(
                "Request log",
                {
                    "{{outcome}}": "sum by (outcome) (rate(driftgate_request_log_records_total[$__rate_interval]))",
                    "failed batches": "sum(rate(driftgate_request_log_failed_batches_total[$__rate_interval]))",
                },
                "ops",
            ),
            Row("Training jobs and the closed loop"),
            Panel(
                "Training jobs by state",
                {"{{state}}": "sum by (state) (driftgate_training_jobs)"},
                description="Jobs in each state (queued, running, succeeded, failed, cancelled), as each gateway "
                "reads its own job directory every 5 s, summed over replicas.",
            ),
            # Loop events are rare: increase() over a window would hide the first of each series (born at 1),
            # so these panels plot the counts themselves, and each step up is an event.
            Panel(
                "Loop decisions by status",
                {
                    "{{alias}} {{status}}": f"sum by (alias, status) (driftgate_loop_decisions_total{{{ALIAS_IS_ALIAS}}})"
                },
                description="Drift alerts the loop controller decided on since each gateway started, by the run "
                "status they led to: skipped (cooldown, too few new samples, daily cap, duplicate...), queued or "
                "awaiting_approval. Each step up is a decision; `driftgate loop list` shows them.",
            ),
            Panel(
                "Loop outcomes by alias",
                {
                    "{{alias}} {{outcome}}": f"sum by (alias, outcome) (driftgate_loop_outcomes_total{{{ALIAS_IS_ALIAS}}})"
                },
                description="Loop runs finished since each gateway started: promoted, rolled_back (the canary "
                "lost), rejected (the offline gate) or failed. Each step up is a run; 'Adapter versions serving "
                "each alias' above shows the versions they left serving.",
            ),
        ],
    ),
}


def panel_json(panel: Panel, index: int, x: int, y: int) -> dict:
    steps = [{"color": "green", "value": None}] + [{"color": "red", "value": value} for value in panel.thresholds]
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "thresholds": {"mode": "absolute", "steps": steps},
                "custom": {"thresholdsStyle": {"mode": "line" if panel.thresholds else "off"}},
            },
            "overrides": [],
        },
        "targets": [
            {"refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend, "datasource": DATASOURCE}
            for n, (legend, expr) in enumerate(panel.queries.items())
        ],
    }


def row_json(row: Row, index: int, y: int) -> dict:
    return {
        "id": index + 1,
        "type": "row",
        "title": row.title,
        "collapsed": False,
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
        "panels": [],
    }


def layout(items: list[Panel | Row]) -> list[dict]:
    """Two panels a line, 8 high; a row starts on a new line and takes one unit of height."""
    placed, y, column = [], 0, 0
    for index, item in enumerate(items):
        if isinstance(item, Row):
            y += 8 if column else 0
            placed.append(row_json(item, index, y))
            y, column = y + 1, 0
            continue
        placed.append(panel_json(item, index, column * 12, y))
        y, column = (y + 8, 0) if column else (y, 1)
    return placed


def dashboard_json(uid: str, title: str, panels: list[Panel | Row]) -> dict:
    return {
        "uid": uid,
        "title": title,
        "tags": ["driftgate"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
                {
                    "name": ALIAS_VARIABLE,
                    "label": "Alias / model",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": ALIAS_VALUES,
                    "definition": ALIAS_VALUES,
                    "refresh": 2,  # on time range change: new aliases appear without a reload
                    "sort": 1,
                    "multi": True,
                    "includeAll": True,
                    "allValue": ALIAS_ALL,
                    "current": {"text": ["All"], "value": ["$__all"]},
                },
                *[
                    {"name": name, "type": "textbox", "query": value, "current": {"value": value, "text": value}}
                    for name, value in VARIABLES.items()
                ],
            ]
        },
        "panels": layout(panels),
    }


def build(output: Path = OUTPUT) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for uid, (title, panels) in DASHBOARDS.items():
        path = output / f"{uid}.json"
        path.write_text(json.dumps(dashboard_json(uid, title, panels), indent=2) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in build():
        print(path)
