"""Drift alerts in Alertmanager's webhook format, and a sender that never fails its caller.

The payload is what Alertmanager itself POSTs to a webhook receiver (``version: "4"``), so one receiver
(``/admin/alerts``, or any Alertmanager-compatible tool) takes alerts from Prometheus rules and from
the drift monitor alike.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import aiohttp
import msgspec

if TYPE_CHECKING:
    from monitor.drift import DriftEvent

log = logging.getLogger(__name__)
ALERTNAME = "EmbeddingDrift"
# Alertmanager's "no end time yet" for a firing alert.
ZERO_TIME = "0001-01-01T00:00:00Z"


class Alert(msgspec.Struct, frozen=True, rename="camel"):
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    generator_url: str = msgspec.field(name="generatorURL")
    fingerprint: str = ""


class WebhookPayload(msgspec.Struct, frozen=True, rename="camel"):
    version: str
    group_key: str
    truncated_alerts: int
    status: str
    receiver: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str = msgspec.field(name="externalURL")
    alerts: list[Alert] = msgspec.field(default_factory=list)


def alert_payload(
    event: DriftEvent,
    *,
    severity: str = "warning",
    started_at: float | None = None,
    external_url: str = "",
    receiver: str = "driftgate",
) -> WebhookPayload:
    """The webhook body for a fired or resolved drift. ``started_at``: when a resolved drift fired."""
    labels = {"alertname": ALERTNAME, "alias": event.alias, "version": event.version, "severity": severity}
    window = event.windows[-1]
    annotations = {
        "summary": f"Embedding drift on {_served(event)}"
        + (" confirmed" if event.transition == "fired" else " cleared"),
        "description": (
            f"{event.method} score {event.score:.4g} vs threshold {event.threshold:.4g} "
            f"over {len(event.windows)} window(s) of production prompts"
        ),
        "method": event.method,
        "score": f"{event.score:.6g}",
        "threshold": f"{event.threshold:.6g}",
        "window": f"#{window.sequence}: {window.size} prompts, "
        f"{_rfc3339(window.opened_at)} to {_rfc3339(window.closed_at)}",
        "windows": str(len(event.windows)),
        "request_ids": ",".join(event.request_ids),
    }
    firing = event.transition == "fired"
    status = "firing" if firing else "resolved"
    alert = Alert(
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=_rfc3339(event.at if firing else (started_at or event.at)),
        ends_at=ZERO_TIME if firing else _rfc3339(event.at),
        generator_url=f"{external_url}/admin/drift" if external_url else "",
        fingerprint=hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16],
    )
    group = {"alertname": ALERTNAME, "alias": event.alias}
    return WebhookPayload(
        version="4",
        group_key="{}:" + repr(sorted(group.items())),
        truncated_alerts=0,
        status=status,
        receiver=receiver,
        group_labels=group,
        common_labels=labels,
        common_annotations=annotations,
        external_url=external_url,
        alerts=[alert],
    )


def _served(event: DriftEvent) -> str:
    """``support@3`` for an adapter version (its version already names the alias), ``model@base`` otherwise."""
    return event.version if "@" in event.version else f"{event.alias}@{event.version}"


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


class AlertSender:
    """POSTs payloads to one webhook URL, retrying with exponential backoff; logs, never raises."""

    def __init__(
        self,
        url: str,
        *,
        attempts: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.headers = {"content-type": "application/json", **(headers or {})}

    async def send(self, payload: WebhookPayload) -> bool:
        """True once the receiver answered 2xx; False after the last attempt failed."""
        body = msgspec.json.encode(payload)
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                async with (
                    aiohttp.ClientSession(timeout=self.timeout) as session,
                    session.post(self.url, data=body, headers=self.headers) as response,
                ):
                    if response.status < 300:
                        return True
                    problem = f"HTTP {response.status}"
                    if 400 <= response.status < 500 and response.status not in (408, 429):
                        break  # the receiver rejects this payload: retrying cannot help
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            log.warning("drift alert to %s failed (attempt %d/%d): %s", self.url, attempt + 1, self.attempts, problem)
        log.error("drift alert to %s dropped: %s", self.url, problem)
        return False
