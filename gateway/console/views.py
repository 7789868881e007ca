"""What each console page shows, assembled from the gateway's services into plain values for the templates.

Prompt text reaches a page only through :func:`shown_prompt`: the request log holds what the guards left, and
the console redacts it again with the PII detector (every entity found becomes ``<ENTITY>``, whatever the
alias's policy did with it), so a page never shows more than a redacted log line. The templates escape it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.adapters.models import Snapshot
from gateway.console.sampler import Sampler
from gateway.drift.watch import DriftWatch
from gateway.loop.dataset import conversation_of
from guards.config import PiiSettings
from guards.pii import PiiGuard
from monitor.request_log import RequestRecord
from monitor.request_log_store import RequestLogStore

_PII = PiiGuard(PiiSettings())
# Characters of a prompt a page shows.
PROMPT_CHARS = 400


def shown_prompt(text: str | None) -> str:
    """``text`` with every PII finding replaced by its entity name, cut to :data:`PROMPT_CHARS`."""
    if not text:
        return ""
    out, cursor = [], 0
    for finding in sorted(_PII.inspect(text), key=lambda finding: finding.start):
        out += [text[cursor : finding.start], f"<{finding.entity}>"]
        cursor = finding.end
    out.append(text[cursor:])
    shown = "".join(out)
    return shown if len(shown) <= PROMPT_CHARS else shown[:PROMPT_CHARS] + "…"


def shown_record(record: RequestRecord) -> str:
    """A logged request's prompt as a person reads it: chat turns as ``role: text`` lines, redacted."""
    conversation = conversation_of(record)
    if conversation is None:
        return shown_prompt(record.prompt)
    return shown_prompt("\n".join(f"{turn['role']}: {turn['content']}" for turn in conversation))


def chart(series: dict[str, list[Any]], at: list[float]) -> str:
    """A plot's data for ``console.js``: x (unix seconds) and named y series, as JSON for a data block."""
    return json.dumps({"x": at, "series": series})


def overview(sampler: Sampler) -> dict[str, Any]:
    points = list(sampler.points)
    at = [point.at for point in points]
    latest = points[-1] if points else None
    return {
        "latest": latest,
        "totals": sampler.totals(),
        "served": sampler.last.requests - sampler.first.requests if sampler.first and sampler.last else 0,
        "every_s": sampler.every_s,
        "traffic": chart(
            {
                "requests/s": [point.requests_per_s for point in points],
                "5xx/s": [point.errors_per_s for point in points],
                "4xx/s": [point.refused_per_s for point in points],
            },
            at,
        ),
        "latency": chart(
            {
                "p50 ms": [point.p50_ms for point in points],
                "p99 ms": [point.p99_ms for point in points],
                "TTFT p50 ms": [point.ttft_p50_ms for point in points],
            },
            at,
        ),
        "blocks": guard_blocks(sampler),
        "blocks_now": sum(latest.blocks.values()) if latest else 0,
    }


def guard_blocks(sampler: Sampler) -> str:
    points = list(sampler.points)
    guards = sorted({guard for point in points for guard in point.blocks})
    return chart(
        {guard: [point.blocks.get(guard, 0.0) for point in points] for guard in guards}, [p.at for p in points]
    )


def _records(store: RequestLogStore | None, ids: list[str]) -> list[RequestRecord]:
    if store is None:
        return []
    return [record for record in map(store.get, ids) if record is not None]


async def drift(watch: DriftWatch | None, sampler: Sampler, store: RequestLogStore | None, home: Path) -> list[dict]:
    """Per watched alias: its state, its window scores against the thresholds, its most novel recent prompts."""
    if watch is None:
        return []
    aliases = []
    for state in watch.states():
        series = list(sampler.drift.get(state.alias, ()))
        novel = state.last.novel_request_ids[:5] if state.last is not None else []
        records = await asyncio.to_thread(_records, store, novel)
        report = evidently_report(home, state.alias)
        aliases.append(
            {
                "state": state,
                "plot": chart(
                    {
                        "score": [point.score for point in series],
                        "threshold": [point.threshold for point in series],
                        "clear below": [point.clear_threshold for point in series],
                    },
                    [point.at for point in series],
                ),
                "windows": len(series),
                "novel": [{"id": record.id, "prompt": shown_record(record)} for record in records],
                "report": report.name if report is not None else None,
                "report_at": report.stat().st_mtime if report is not None else None,
            }
        )
    return aliases


def reports_dir(home: Path) -> Path:
    """Where Evidently reports are looked for: ``driftgate drift report MODEL --out <home>/reports/MODEL.html``."""
    return home / "reports"


def evidently_report(home: Path, alias: str) -> Path | None:
    path = reports_dir(home) / f"{alias}.html"
    return path if path.is_file() else None


def blocked_requests(store: RequestLogStore | None, limit: int = 20) -> list[dict]:
    if store is None:
        return []
    return [
        {
            "record": record,
            "prompt": shown_record(record),
            "blocks": sorted({f"{d.guard}:{d.entity}" for d in record.guard_decisions if d.action == "block"}),
        }
        for record in store.blocked(limit)
    ]


def alias_row(snapshot: Snapshot, name: str) -> dict[str, Any]:
    """One alias: its versions, newest first, each with its stage, its share of traffic now, its eval numbers
    and lineage (the training run it came from)."""
    alias = snapshot.aliases[name]
    shares = {alias.production: 1.0 - alias.canary_share} if alias.production is not None else {}
    if alias.canary is not None:
        shares[alias.canary] = alias.canary_share
    versions = sorted((v for v in snapshot.versions.values() if v.alias == name), key=lambda v: -v.number)
    return {
        "alias": alias,
        "versions": [
            {
                "version": version,
                "share": shares.get(version.number, 0.0),
                "evals": {key: value for key, value in version.eval_results.items() if _scalar(value)},
                "lineage": {key: value for key, value in (version.training_run or {}).items() if _scalar(value)},
            }
            for version in versions
        ],
    }


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)
