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
from litestar.di import NamedDependency
from msgspec import Meta

from gateway.edge.guard_work import guard_cost
from gateway.edge.request_path import RequestPath
from gateway.edge.schemas import decode_request
from gateway.errors import ContentFiltered, InvalidRequest, RequestNotFound
from gateway.loop.store import LoopStore
from guards import RedactionContext
from monitor.request_log import RequestRecord
from monitor.request_log_writer import RequestLogWriter

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
async def feedback(
    request: Request,
    request_path: NamedDependency[RequestPath],
    loop_store: NamedDependency[LoopStore],
    request_log: NamedDependency[RequestLogWriter],
) -> FeedbackReceipt:
    key = await request_path.caller_key(request)
    body = decode_request(await request.body(), FeedbackRequest)
    if body.rating is None and body.correction is None:
        raise InvalidRequest("Give a `rating`, a `correction`, or both.", param="rating")
    record = await _logged(request_log, body.request_id)
    if record is None or (key is not None and key.scope != "admin" and record.key_id != key.id):
        # Another caller's request is as unknown as one that never existed.
        raise RequestNotFound(f"No logged request `{body.request_id}`.", param="request_id")
    correction = await _guarded(request_path, record, body.correction) if body.correction is not None else None
    item = await asyncio.to_thread(
        loop_store.add_feedback,
        record.id,
        record.alias,
        record.version,
        key.id if key is not None else None,
        body.rating,
        correction,
    )
    return FeedbackReceipt(item.id, record.id, record.alias, record.version, body.rating, correction is not None)


async def _logged(writer: RequestLogWriter, request_id: str) -> RequestRecord | None:
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


async def _guarded(request_path: RequestPath, record: RequestRecord, correction: str) -> str:
    """The correction through the answering route's output guards, on a guard thread within their budget."""
    guards = request_path.guards_for(record.alias, record.version)
    if guards is None:
        return correction
    cap = request_path.limits.max_guarded_chars
    if cap is not None and len(correction) > cap:
        raise InvalidRequest(f"A correction may hold at most {cap} characters.", param="correction")
    verdict = await request_path.guard_work.run(
        lambda _: guards.output.run(correction, RedactionContext()),
        guards.config.budget_s,
        "output",
        guard_cost(len(correction), correction.encode()),
    )
    if verdict.blocked:
        raise ContentFiltered("The correction was refused by the output guards.", param="correction")
    return verdict.text
