"""Operator routes under /admin: the fleet's drift state now (adapters, jobs and keys join here)."""

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
    # The fleet's recent confirmations and clearances, newest last.
    events: list[DriftEvent]
    # Prompts this worker did not record: its queue was full, or the state database was away.
    dropped: int


@get("/admin/drift", guards=[require_admin_scope])
async def drift_state(drift: NamedDependency[DriftWatch | None]) -> DriftReport:
    if drift is None:  # drift detection is off
        return DriftReport([], [], 0)
    # The fleet's state, read now: every replica answers the same.
    return DriftReport(await drift.refresh(), list(drift.events), drift.dropped)
