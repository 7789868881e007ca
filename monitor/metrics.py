"""Prometheus metric definitions: every name starts with ``driftgate_``, carries its unit, and has bounded labels.

Labels never hold free text from clients: model names are the configured ones (anything else is
``unknown``), backends are configured URLs. With several server workers, prometheus-client's multiprocess
mode is used (``PROMETHEUS_MULTIPROC_DIR``); :func:`render` then merges every worker's files.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Seconds; LLM requests span milliseconds (errors, cache hits) to minutes (long generations).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# The gateway's own time per request: microseconds to a few milliseconds.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

REQUESTS = Counter(
    "driftgate_requests_total", "Requests answered, by route, model and HTTP status.", ["route", "model", "status"]
)
REQUEST_DURATION = Histogram(
    "driftgate_request_duration_seconds",
    "Time from request start to the last byte of the answer.",
    ["route", "model", "stream"],
    buckets=LATENCY_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "driftgate_time_to_first_token_seconds",
    "Streaming requests: time from request start to the first chunk from the backend.",
    ["model"],
    buckets=TTFT_BUCKETS,
)
OVERHEAD = Histogram(
    "driftgate_overhead_seconds",
    "Time spent in driftgate's own code per request, upstream wait excluded.",
    ["route"],
    buckets=OVERHEAD_BUCKETS,
)
TOKENS = Counter(
    "driftgate_tokens_total", "Tokens reported by the backend's usage, by direction.", ["model", "direction"]
)
UPSTREAM_ERRORS = Counter(
    "driftgate_upstream_errors_total",
    "Failed exchanges with a backend, by kind (connect, timeout, disconnect, status).",
    ["backend", "kind"],
)
UPSTREAM_RETRIES = Counter(
    "driftgate_upstream_retries_total", "Requests moved to another replica after a failed connect.", ["backend"]
)
BACKEND_UP = Gauge(
    "driftgate_backend_up", "1 when the backend's last health check passed.", ["backend"], multiprocess_mode="max"
)
BACKEND_OUTSTANDING = Gauge(
    "driftgate_backend_outstanding_requests",
    "Requests in flight to the backend from this gateway.",
    ["backend"],
    multiprocess_mode="livesum",
)


def render() -> tuple[bytes, str]:
    """The exposition text for ``/metrics`` and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


# Guards: one count per decision, never the matched value.
GUARD_DECISIONS = Counter(
    "driftgate_guard_decisions_total",
    "Guard decisions, by guard, stage (input/output) and action (allow/redact/mask/block).",
    ["guard", "stage", "action"],
)
GUARD_TIMEOUTS = Counter(
    "driftgate_guard_timeouts_total",
    "Requests whose guards did not finish within their budget (guards.budget_s), by stage (input/output).",
    ["stage"],
)

# Request log: what the writer kept off the request path, and what it had to give up.
LOG_RECORDS = Counter(
    "driftgate_request_log_records_total", "Request-log records by outcome (written, dropped).", ["outcome"]
)
LOG_FAILED_BATCHES = Counter(
    "driftgate_request_log_failed_batches_total", "Request-log batch writes that failed and were retried."
)

# Drift, per alias: the score of the last full window against the alias's reference.
DRIFT_SCORE = Gauge("driftgate_drift_score", "Drift score of the last full window.", ["alias"], multiprocess_mode="max")
DRIFT_THRESHOLD = Gauge(
    "driftgate_drift_threshold", "Score above which a window counts as drifted.", ["alias"], multiprocess_mode="max"
)
DRIFT_CONFIRMED = Gauge(
    "driftgate_drift_confirmed", "1 while drift is confirmed for the alias.", ["alias"], multiprocess_mode="max"
)
DRIFT_WINDOWS = Counter(
    "driftgate_drift_windows_total",
    "Drift windows checked, by verdict (drift, no_drift, too_small).",
    ["alias", "verdict"],
)

# Adapters: labels are registered alias names and their version names (operator-created, so bounded).
ADAPTER_REQUESTS = Counter(
    "driftgate_adapter_requests_total", "Requests answered by an adapter version.", ["alias", "version"]
)
ADAPTER_VERSION_INFO = Gauge(
    "driftgate_adapter_version_info",
    "1 for each version an alias serves now (stage production or canary), 0 once it no longer does.",
    ["alias", "version", "stage"],
    multiprocess_mode="max",
)
ADAPTER_SWAPS = Counter(
    "driftgate_adapter_swaps_total", "Alias changes, by kind (promote, rollback, canary).", ["alias", "kind"]
)
ADAPTER_FAILURES = Counter(
    "driftgate_adapter_failures_total",
    "Failed adapter operations, by kind (load, unload, promote, canary, rollback).",
    ["alias", "kind"],
)
ADAPTER_LOAD_SECONDS = Histogram(
    "driftgate_adapter_load_seconds",
    "Time for a backend to load a LoRA adapter (POST /v1/load_lora_adapter).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ADAPTERS_RESIDENT = Gauge(
    "driftgate_adapters_resident",
    "LoRA adapters loaded on a backend now (at most its --max-loras).",
    ["backend"],
    multiprocess_mode="max",
)
ADAPTER_LOADS = Counter(
    "driftgate_adapter_loads_total",
    "Adapter loads, by why: `request` (a request for a version not loaded) or `reconcile` (a free slot filled).",
    ["reason"],
)
ADAPTER_EVICTIONS = Counter(
    "driftgate_adapter_evictions_total",
    "Idle adapters unloaded to make room for a version a request needed (least recently used first).",
)
ADAPTER_LOAD_WAIT_SECONDS = Histogram(
    "driftgate_adapter_load_wait_seconds",
    "How long requests for a version that was not loaded waited for it (room, then the load).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
AUTO_ROUTES = Counter(
    "driftgate_auto_routes_total",
    "Requests for the auto model, by the alias routing by content chose (`fallback` when none was near enough).",
    ["alias"],
)
AUTO_ROUTE_SECONDS = Histogram(
    "driftgate_auto_route_seconds",
    "Time to choose an alias by content: embedding the prompt and scoring it against the aliases.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)

# The closed loop: what alerts led to, and the training jobs it runs.
LOOP_DECISIONS = Counter(
    "driftgate_loop_decisions_total",
    "Drift alerts the loop controller decided on, by alias and resulting run status (skipped, queued, ...).",
    ["alias", "status"],
)
LOOP_OUTCOMES = Counter(
    "driftgate_loop_outcomes_total",
    "Loop runs finished, by alias and outcome (promoted, rolled_back, rejected, failed).",
    ["alias", "outcome"],
)
TRAINING_JOBS = Gauge(
    "driftgate_training_jobs",
    "Training jobs known to this gateway, by state (queued, running, succeeded, failed, cancelled).",
    ["state"],
    multiprocess_mode="max",
)

# Resilience: circuit breakers, and requests turned away before reaching a backend.
BACKEND_CIRCUIT_OPEN = Gauge(
    "driftgate_backend_circuit_open",
    "1 while the backend's circuit breaker is open or half-open (no traffic but one probe), else 0.",
    ["model", "backend"],
    multiprocess_mode="max",
)
REJECTED_REQUESTS = Counter(
    "driftgate_rejected_requests_total",
    "Requests turned away before reaching a backend, by reason (overloaded, circuit_open, rpm, tpm, concurrency).",
    ["reason"],
)
SHARED_LIMIT_FAILURES = Counter(
    "driftgate_shared_limit_failures_total",
    "Shared per-key limit checks the state database could not answer in time (the worker's own limits applied).",
    ["op"],
)
IN_FLIGHT = Gauge(
    "driftgate_in_flight_requests",
    "Inference requests the gateway holds now (bounded by limits.max_in_flight per worker).",
    multiprocess_mode="livesum",
)
