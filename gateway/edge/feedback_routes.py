"""``POST /v1/feedback``: a rating or a corrected answer for a request the gateway logged (a training signal).

The client quotes the ``x-request-id`` of an answer it received. A correction is run through the alias's
output guards before it is stored: PII is redacted, and a toxic correction is refused like a toxic answer,
so poisoned feedback never reaches a training set.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from litestar import Request, post
from litestar.datastructures import State
from msgspec import Meta

from gateway.edge.schemas import decode_request
from gateway.errors import ContentFiltered, FeatureNotConfigured, InvalidRequest, RequestNotFound
from gateway.runtime import Gateway
from guards import RedactionContext
from monitor.request_log import RequestRecord

# How long a just-answered request may take to reach the log before its feedback is refused as unknown.
FLUSH_WAIT_S = 3.0


class FeedbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    request_id: Annotated[str, Meta(min_length=1, max_length=128)]
    # -1 bad, 0 neutral, 1 good (an up-voted answer becomes a training sample as it is).
    rating: Annotated[int, Meta(ge=-1, le=1)] | None = None
    # The answer the model should have given.
    correction: Annotated[str, Meta(min_length=1, max_length=32_768)] | None = None


class FeedbackReceipt(msgspec.Struct):
    id: str
    request_id: str
    model: str
    version: str | None
    rating: int | None
    corrected: bool
    object: str = "feedback"


@post("/v1/feedback", status_code=201)
async def feedback(request: Request, state: State) -> FeedbackReceipt:
    gateway: Gateway = state.gateway
    key = await gateway.request_path.caller_key(request)
    body = decode_request(await request.body(), FeedbackRequest)
    if body.rating is None and body.correction is None:
        raise InvalidRequest("Give a `rating`, a `correction`, or both.", param="rating")
    if gateway.loop_store is None or gateway.request_log is None:
        raise FeatureNotConfigured("Feedback needs the request log, which is off in this gateway.")
    record = await _logged(gateway, body.request_id)
    if record is None or (key is not None and key.scope != "admin" and record.key_id != key.id):
        # Another caller's request is as unknown as one that never existed.
        raise RequestNotFound(f"No logged request `{body.request_id}`.", param="request_id")
    correction = _guarded(gateway, record, body.correction) if body.correction is not None else None
    item = await asyncio.to_thread(
        gateway.loop_store.add_feedback,
        record.id,
        record.alias,
        record.version,
        key.id if key is not None else None,
        body.rating,
        correction,
    )
    return FeedbackReceipt(item.id, record.id, record.alias, record.version, body.rating, correction is not None)


async def _logged(gateway: Gateway, request_id: str) -> RequestRecord | None:
    writer = gateway.request_log
    assert writer is not None
    found = await asyncio.to_thread(writer.store.get, request_id)
    if found is None:
        # Answered a moment ago: its record may still wait in the writer's queue.
        try:
            async with asyncio.timeout(FLUSH_WAIT_S):
                await writer.flush()
        except TimeoutError:
            return None
        found = await asyncio.to_thread(writer.store.get, request_id)
    return found


def _guarded(gateway: Gateway, record: RequestRecord, correction: str) -> str:
    guards = gateway.request_path.guards_for(record.alias, record.version)
    if guards is None:
        return correction
    verdict = guards.output.run(correction, RedactionContext())
    if verdict.blocked:
        raise ContentFiltered("The correction was refused by the output guards.", param="correction")
    return verdict.text
