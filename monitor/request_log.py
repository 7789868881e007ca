"""The request log's types: one record per request, and the settings of the store that keeps them.

A record holds text only after the guards have redacted it. The log never redacts: it cannot tell a
prompt that was redacted from one that was not, so the caller (the gateway, which ran the guards) must
pass ``prompt`` and ``completion`` already redacted, and guard decisions as counts, never matched values.
"""

from __future__ import annotations

import msgspec


class GuardDecision(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """What one guard did at one stage: which kind of finding, what it did about it, how often.

    ``entity`` names a PII entity type or a toxicity category (``EMAIL``, ``insult``), never the text it matched.
    """

    guard: str
    stage: str  # "input" or "output"
    entity: str
    action: str  # e.g. "redact", "block", "allow"
    count: int = 1


class RequestRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One request as the gateway served it. ``id`` is the gateway's request id, unique per request.

    Not tracked by Python's garbage collector (``gc=False``, and a tuple of decisions, not a list): records wait
    in the writer's queue for up to ``max_delay_s``, and while tracked they were traversed by the collections
    made in the meantime. In one A/B at 800 requests/s the event loop's thread spent 12 µs per request on the
    log untracked against 25 µs tracked (docs/benchmarks.md). A record holds only strings, numbers and
    decisions, so it can never be part of a reference cycle.
    """

    id: str
    time: float  # unix seconds when the request arrived
    alias: str  # the model name the client asked for
    route: str  # e.g. "/v1/chat/completions"
    status: int  # HTTP status sent to the client
    latency_ms: float
    key_id: str | None = None
    version: str | None = None  # adapter version served, e.g. "support@3"
    backend: str | None = None  # URL of the vLLM replica that answered
    ttft_ms: float | None = None  # time to first token, streaming only
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    guard_decisions: tuple[GuardDecision, ...] = ()
    # Already redacted by the guards: the log stores them as given (NUL, which PostgreSQL refuses, becomes U+FFFD).
    prompt: str | None = None
    completion: str | None = None
    embedding_ref: str | None = None  # where the prompt's embedding is stored, not the vector itself
    stream: bool = False


class RequestLogSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Where the log lives, how it is batched off the request path, and how long it keeps records."""

    # ``sqlite:///path/driftgate.db`` (embedded) or ``postgresql+psycopg://user@host/db`` (cluster);
    # None lets the caller choose (the gateway puts SQLite under its home directory).
    url: str | None = None
    # Records waiting to be written; beyond this, ``submit`` drops and counts instead of blocking.
    queue_size: int = 10_000
    batch_size: int = 256
    # Longest a partial batch waits for more records before it is written anyway.
    max_delay_s: float = 0.2
    # Backoff between retries of a batch the store refused (locked, disk full, server down).
    retry_initial_s: float = 0.05
    retry_max_s: float = 5.0
    # How long a SQLite write waits for another writer's lock before the batch is retried.
    sqlite_busy_timeout_ms: int = 5_000
    # Retention: records older than this, or beyond this many (oldest first), are deleted. None keeps all.
    max_age_days: float | None = 30.0
    max_rows: int | None = 1_000_000
    retention_interval_s: float = 300.0
    # On shutdown, how long ``close`` keeps trying to write what was accepted before counting it dropped.
    close_timeout_s: float = 10.0
