"""The gateway parts the console reads, handed to its pages by dependency injection
(:func:`gateway.providers.provide_console`). Unlike the admin API's providers, a part that is off is None
here: the page says so instead of answering 404."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.adapters.service import Adapters
from gateway.console.sampler import Sampler
from gateway.drift.watch import DriftWatch
from gateway.loop.controller import LoopController
from gateway.loop.store import LoopStore
from gateway.security.auth import Authenticator
from monitor.request_log_store import RequestLogStore


@dataclass(frozen=True, slots=True)
class ConsoleParts:
    home: Path
    sampler: Sampler
    auth: Authenticator
    adapters: Adapters | None
    drift: DriftWatch | None
    loop: LoopController | None
    loop_store: LoopStore | None
    request_log: RequestLogStore | None
