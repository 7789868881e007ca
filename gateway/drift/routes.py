"""Operator routes under /admin: drift state now (adapters, jobs and keys join here)."""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.di import NamedDependency

from gateway.drift.watch import DriftWatch
from gateway.edge.admin_access import require_admin_scope
from monitor.drift_types import AliasState, DriftEvent


class DriftReport(msgspec.Struct):
    # Models watched for drift, each with its window, last score and status ("collecting" means no verdict
    # yet: fewer prompts than the minimum window).
    aliases: list[AliasState]
    # Recent confirmations and clearances, newest last.
    events: list[DriftEvent]
    # Prompts not embedded because the queue was full.
    dropped: int


@get("/admin/drift", guards=[require_admin_scope])
async def drift_state(drift: NamedDependency[DriftWatch | None]) -> DriftReport:
    if drift is None:  # drift detection is off
        return DriftReport([], [], 0)
    return DriftReport(drift.states(), list(drift.events), drift.dropped)
