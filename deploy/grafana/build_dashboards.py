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


DASHBOARDS: dict[str, tuple[str, list[Panel | Row]]] = {
    "driftgate-overview": (
        "driftgate: traffic, latency and tokens",
        [
            Panel(
                "Requests per second",
                {"{{model}} {{status}}": "sum by (model, status) (rate(driftgate_requests_total[$__rate_interval]))"},
                "reqps",
            ),
            Panel(
                "Error ratio (5xx)",
                {
                    "{{model}}": 'sum by (model) (rate(driftgate_requests_total{status=~"5.."}[$__rate_interval])) / clamp_min(sum by (model) (rate(driftgate_requests_total[$__rate_interval])), 1e-9)'
                },
                "percentunit",
                thresholds=[0.05],
            ),
            Panel(
                "Latency p50 / p99 (non-streaming)",
                {
                    "p50 {{model}}": quantile(0.5, "driftgate_request_duration_seconds", selector='{stream="false"}'),
                    "p99 {{model}}": quantile(0.99, "driftgate_request_duration_seconds", selector='{stream="false"}'),
                },
                "s",
            ),
            Panel(
                "Time to first token p50 / p99",
                {
                    "p50 {{model}}": quantile(0.5, "driftgate_time_to_first_token_seconds"),
                    "p99 {{model}}": quantile(0.99, "driftgate_time_to_first_token_seconds"),
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
                    "{{model}} {{direction}}": "sum by (model, direction) (rate(driftgate_tokens_total[$__rate_interval]))"
                },
            ),
            Panel(
                "Cost per hour by alias",
                {
                    "{{model}}": "sum by (model) (rate(driftgate_tokens_total[$__rate_interval])) * 3600 / 1000 * $cost_per_1k_tokens"
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
                    "score {{alias}}": "max by (alias) (driftgate_drift_score)",
                    "threshold {{alias}}": "max by (alias) (driftgate_drift_threshold)",
                },
            ),
            Panel("Drift confirmed", {"{{alias}}": "max by (alias) (driftgate_drift_confirmed)"}),
            Panel(
                "Adapter versions serving each alias",
                {"{{alias}} {{version}} {{stage}}": "max by (alias, version, stage) (driftgate_adapter_version_info)"},
                description="1 while a version serves its alias (production or canary): promotions and rollbacks over time.",
            ),
            Panel(
                "Requests by adapter version",
                {
                    "{{alias}} {{version}}": "sum by (alias, version) (rate(driftgate_adapter_requests_total[$__rate_interval]))"
                },
                "reqps",
            ),
            Panel(
                "Adapter swaps and failures",
                {
                    "{{alias}} {{kind}}": "sum by (alias, kind) (increase(driftgate_adapter_swaps_total[1h]))",
                    "failed {{alias}} {{kind}}": "sum by (alias, kind) (increase(driftgate_adapter_failures_total[1h]))",
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
                {"{{alias}} {{verdict}}": "sum by (alias, verdict) (increase(driftgate_drift_windows_total[1h]))"},
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
                {"{{alias}} {{status}}": "sum by (alias, status) (driftgate_loop_decisions_total)"},
                description="Drift alerts the loop controller decided on since each gateway started, by the run "
                "status they led to: skipped (cooldown, too few new samples, daily cap, duplicate...), queued or "
                "awaiting_approval. Each step up is a decision; `driftgate loop list` shows them.",
            ),
            Panel(
                "Loop outcomes by alias",
                {"{{alias}} {{outcome}}": "sum by (alias, outcome) (driftgate_loop_outcomes_total)"},
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
