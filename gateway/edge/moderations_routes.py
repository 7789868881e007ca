"""``POST /v1/moderations``: OpenAI's moderation endpoint, answered by the gateway's own guards.

Clients that already call ``client.moderations.create`` point at the gateway unchanged. OpenAI's categories
are filled from the guards' scores where one answers them (harassment from the Jigsaw toxic / insult /
severe_toxic scores and the rules' threats and self-harm urging, threats from "threat", hate from
"identity_hate", self-harm from the rules' "self_harm" and "self_harm_intent"); the categories no guard here
scores (illicit, graphic violence...) are reported false with score 0, never guessed. With the model tier on
(``guards.input.semantic``), its heads answer hate, harassment, threats, self-harm urging and sexual content
too (``model/<category>`` beside OpenAI's). The guards' own categories (the six Jigsaw labels,
``prompt_injection`` and the model tier's) are added beside OpenAI's, and ``decided_by`` says which tier
flagged the text: "fast" (the word models and rules, which decide alone when they flag), "model", or null.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from msgspec import Meta

from gateway.edge.guard_work import guard_cost
from gateway.edge.guarding import GuardSet
from gateway.edge.request_path import RequestPath
from gateway.edge.schemas import decode_request
from gateway.errors import InvalidRequest
from guards import Guards
from guards.normalize import normalize

MODEL = "driftgate-guards"
# OpenAI's categories, each as the guard categories it is the maximum of (empty: not scored here).
OPENAI_CATEGORIES: dict[str, tuple[str, ...]] = {
    "harassment": ("toxic", "severe_toxic", "insult", "toxicity", "threat", "self_harm", "model/harassment"),
    "harassment/threatening": ("threat", "self_harm", "model/threat"),
    "hate": ("identity_hate", "model/hate"),
    "hate/threatening": (),
    "illicit": (),
    "illicit/violent": (),
    "self-harm": ("self_harm", "self_harm_intent", "model/self_harm"),
    "self-harm/intent": ("self_harm_intent",),
    # OpenAI: "encourages performing acts of self-harm ... or gives instructions": urging the reader is the former.
    "self-harm/instructions": ("self_harm", "model/self_harm"),
    "sexual": ("model/sexual",),
    "sexual/minors": (),
    "violence": ("threat", "model/threat"),
    "violence/graphic": (),
}
MODEL_TIER = "model/"
INJECTION = "prompt_injection"
# Reported only through OpenAI's self-harm categories: the SDK's Python names for those (self_harm,
# self_harm_intent) are these keys, so beside them a client would read the rule's score, not OpenAI's.
OPENAI_ONLY = frozenset({"self_harm", "self_harm_intent"})


class ModerationRequest(msgspec.Struct, forbid_unknown_fields=True):
    # Each text is bounded by the request body limit (max_body_bytes, a 413 beyond it), not by a schema length.
    input: str | Annotated[list[str], Meta(min_length=1, max_length=64)]
    # A route's name picks that route's guard settings; otherwise the gateway's default guards answer.
    model: str | None = None


class ModerationResult(msgspec.Struct):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    # driftgate's own: which tier flagged the text ("fast", "model"), null when nothing did.
    decided_by: str | None = None


class ModerationList(msgspec.Struct):
    id: str
    model: str
    results: list[ModerationResult]


@post("/v1/moderations", status_code=200)
async def moderations(
    request: Request, request_path: NamedDependency[RequestPath], guard_set: NamedDependency[GuardSet]
) -> ModerationList:
    await request_path.caller_key(request)
    body = decode_request(await request.body(), ModerationRequest)
    texts = [body.input] if isinstance(body.input, str) else body.input
    cap = request_path.limits.max_guarded_chars
    chars = sum(map(len, texts))
    if cap is not None and chars > cap:
        raise InvalidRequest(f"The input holds {chars} characters; at most {cap} per request.", param="input")
    guards = guard_set.for_moderation(body.model)
    # Scored on a guard thread, off the event loop, within the guards' budget like any prompt.
    results = await request_path.guard_work.run(
        lambda _: moderate(guards, texts), guards.config.budget_s, "input", guard_cost(chars, "".join(texts).encode())
    )
    return ModerationList(f"modr-{uuid.uuid4().hex}", body.model or MODEL, results)


def moderate(guards: Guards, texts: list[str]) -> list[ModerationResult]:
    """One result per text: every category the input guards score, in one batch per model."""
    texts = [normalize(text).text for text in texts]  # as the guards read a prompt
    toxicity, injection = guards.input.guard("toxicity"), guards.input.guard("injection")
    semantic = guards.input.guard("semantic")
    own: list[dict[str, float]] = toxicity.category_scores(texts) if toxicity is not None else [{} for _ in texts]
    flags: list[dict[str, bool]] = [toxicity.flagged(row) if toxicity is not None else {} for row in own]
    if injection is not None:
        for text, row, flag, score in zip(texts, own, flags, injection.scores(texts), strict=True):
            row[INJECTION] = score
            flag[INJECTION] = injection.finding(text, score).action != "allow"
    fast = [any(flag.values()) for flag in flags]
    model = [False] * len(texts)
    if semantic is not None:
        for index, (row, flag, scores) in enumerate(zip(own, flags, semantic.category_scores(texts), strict=True)):
            hits = semantic.flagged(scores)
            row.update((MODEL_TIER + name, score) for name, score in scores.items())
            flag.update((MODEL_TIER + name, hit) for name, hit in hits.items())
            model[index] = any(hits.values())
    results = []
    for row, flag, by_fast, by_model in zip(own, flags, fast, model, strict=True):
        scores = {
            name: max((row.get(c, 0.0) for c in sources), default=0.0) for name, sources in OPENAI_CATEGORIES.items()
        }
        categories = {name: any(flag.get(c, False) for c in sources) for name, sources in OPENAI_CATEGORIES.items()}
        scores.update((name, score) for name, score in row.items() if name not in OPENAI_ONLY)
        categories.update((name, hit) for name, hit in flag.items() if name not in OPENAI_ONLY)
        decided = "fast" if by_fast else "model" if by_model else None
        results.append(ModerationResult(any(categories.values()), categories, scores, decided))
    return results
