"""Guards applied to OpenAI payloads: prompts before routing, answers before they leave, streams chunk by chunk.

The guards library works on plain text; this module knows where the text sits in each OpenAI shape and
rewrites a body only when a guard changed something, so clean traffic keeps the client's own bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec

from gateway.config import ModelRoute, Settings
from gateway.errors import ContentFiltered
from guards import Decision, GuardModels, Guards, GuardsConfig, RedactionContext, StreamRedactor
from monitor import metrics

CONTENT_FILTER = "content_filter"


def guard_models_dir(settings: Settings) -> Path:
    return settings.models_dir / "guards"


class GuardSet:
    """Each model route's guards, built once per worker; routes without their own config share the default."""

    def __init__(self, settings: Settings) -> None:
        models = GuardModels(guard_models_dir(settings))
        default = Guards(settings.guards, models) if settings.guards.enabled else None
        self._by_model: dict[str, Guards | None] = {}
        for route in settings.models:
            self._by_model[route.name] = self._build(route, models, default)

    @staticmethod
    def _build(route: ModelRoute, models: GuardModels, default: Guards | None) -> Guards | None:
        if route.guards is None:
            return default
        return Guards(route.guards, models) if route.guards.enabled else None

    def for_model(self, model: str) -> Guards | None:
        return self._by_model.get(model)


def needs_export(settings: Settings) -> bool:
    """Whether any route uses the default toxicity model (exported once, before workers start)."""
    configs: list[GuardsConfig] = [settings.guards, *(r.guards for r in settings.models if r.guards is not None)]
    return any(
        config.enabled
        and stage.toxicity.enabled
        and stage.toxicity.model.kind == "linear"
        and not stage.toxicity.model.path
        for config in configs
        for stage in (config.input, config.output)
    )


class RequestGuards:
    """One request's guard state: its alias's guards, one redaction context for prompt and answer, decisions."""

    __slots__ = ("guards", "context", "decisions", "prompt_text", "answer_text", "user_text")

    def __init__(self, guards: Guards) -> None:
        self.guards = guards
        self.context = RedactionContext()
        self.decisions: list[Decision] = []
        # The redacted prompt and answer, for the request log (raw text is never kept).
        self.prompt_text: str | None = None
        self.answer_text: str | None = None
        # What drift detection embeds: the user's own words, redacted.
        self.user_text = ""

    def _note(self, decisions: tuple[Decision, ...]) -> None:
        for decision in decisions:
            metrics.GUARD_DECISIONS.labels(decision.guard, decision.stage, decision.action).inc(decision.count)
        self.decisions.extend(decisions)

    # -- input ------------------------------------------------------------------------------------------

    def check_prompt(self, path: str, body: bytes) -> bytes:
        """The body to send upstream: unchanged, or with prompts redacted. Raises 400 when a guard blocks."""
        document = msgspec.json.decode(body)
        changed = False
        for holder, key in _prompt_slots(path, document):
            verdict = self.guards.input.run(holder[key], self.context)
            self._note(verdict.decisions)
            if verdict.blocked:
                raise _blocked_prompt(verdict.decisions)
            if verdict.text != holder[key]:
                holder[key] = verdict.text
                changed = True
        self.prompt_text = _prompt_for_log(path, document)
        self.user_text = user_words(path, document)
        return msgspec.json.encode(document) if changed else body

    # -- output -----------------------------------------------------------------------------------------

    def check_answer(self, path: str, body: bytes) -> bytes:
        """A whole (non-streamed) answer: each choice redacted, or emptied with finish_reason content_filter."""
        document = msgspec.json.decode(body)
        changed = False
        for choice in document.get("choices") or ():
            holder, key = _answer_slot(path, choice)
            if holder is None or not isinstance(holder.get(key), str):
                continue
            verdict = self.guards.output.run(holder[key], self.context)
            self._note(verdict.decisions)
            if verdict.blocked:
                holder[key] = ""
                choice["finish_reason"] = CONTENT_FILTER
                changed = True
            elif verdict.text != holder[key]:
                holder[key] = verdict.text
                changed = True
            if self.answer_text is None:
                self.answer_text = holder[key]
        return msgspec.json.encode(document) if changed else body

    async def filter_stream(self, path: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Re-emit an SSE stream with each choice's text through a rolling-window redactor.

        A value split across chunks is held until it is complete; a block ends the stream with
        finish_reason ``content_filter`` and ``[DONE]``, which closes the upstream request.
        """
        redactors: dict[int, StreamRedactor] = {}
        self.answer_text = ""
        pending = b""
        async for chunk in chunks:
            pending += chunk
            *events, pending = pending.split(b"\n\n")
            for event in events:
                out, blocked = self._filter_event(path, event, redactors)
                if out:
                    yield out
                if blocked:
                    yield b"data: [DONE]\n\n"
                    return
        if pending.strip():
            yield pending

    def _filter_event(self, path: str, event: bytes, redactors: dict[int, StreamRedactor]) -> tuple[bytes, bool]:
        if not event.startswith(b"data: {"):
            return event + b"\n\n", False  # [DONE], comments, keep-alives
        document = msgspec.json.decode(event[6:])
        choices = document.get("choices")
        if not choices:
            return event + b"\n\n", False  # the usage chunk, error events
        blocked = False
        for choice in choices:
            redactor = redactors.get(choice.get("index", 0))
            if redactor is None:
                redactor = redactors[choice.get("index", 0)] = self.guards.stream(self.context)
            holder, key = _delta_slot(path, choice)
            text = holder.get(key) if holder is not None else None
            step = redactor.feed(text or "")
            emitted = step.text
            decisions = list(step.decisions)
            if choice.get("finish_reason") is not None and not step.blocked:
                final = redactor.flush()
                emitted += final.text
                decisions += final.decisions
                step = final if final.blocked else step
            self._note(tuple(decisions))
            if holder is not None:
                holder[key] = emitted
            if choice.get("index", 0) == 0:
                self.answer_text = (self.answer_text or "") + emitted
            if step.blocked:
                choice["finish_reason"] = CONTENT_FILTER
                blocked = True
        return b"data: " + msgspec.json.encode(document) + b"\n\n", blocked


def _prompt_slots(path: str, document: Any) -> list[tuple[Any, Any]]:
    """(container, key) pairs holding prompt text, so a verdict can replace it in place."""
    slots: list[tuple[Any, Any]] = []
    if path == "/v1/chat/completions":
        for message in document.get("messages") or ():
            content = message.get("content")
            if isinstance(content, str):
                slots.append((message, "content"))
            elif isinstance(content, list):
                slots += [
                    (part, "text") for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
                ]
    elif path == "/v1/completions":
        prompt = document.get("prompt")
        if isinstance(prompt, str):
            slots.append((document, "prompt"))
        elif isinstance(prompt, list):
            slots += [(prompt, index) for index, item in enumerate(prompt) if isinstance(item, str)]
    return slots


def user_words(path: str, document: Any) -> str:
    """The text drift detection judges a request by: its user turns (chat) or its prompt (completions)."""
    if path == "/v1/completions":
        prompt = document.get("prompt")
        return prompt if isinstance(prompt, str) else ""
    parts = []
    for message in document.get("messages") or ():
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)]
    return "\n".join(parts)


def _prompt_for_log(path: str, document: Any) -> str | None:
    """The (redacted) prompt as the log keeps it: the chat messages as JSON, or the completion prompt."""
    if path == "/v1/chat/completions":
        return msgspec.json.encode(document.get("messages")).decode()
    prompt = document.get("prompt")
    return prompt if isinstance(prompt, str) else msgspec.json.encode(prompt).decode()


def _answer_slot(path: str, choice: dict) -> tuple[dict | None, str]:
    if path == "/v1/chat/completions":
        return choice.get("message"), "content"
    return choice, "text"


def _delta_slot(path: str, choice: dict) -> tuple[dict | None, str]:
    if path == "/v1/chat/completions":
        return choice.get("delta"), "content"
    return choice, "text"


def _blocked_prompt(decisions: tuple[Decision, ...]) -> ContentFiltered:
    reasons = sorted({decision.entity.lower() for decision in decisions if decision.action == "block"})
    return ContentFiltered(
        f"The prompt was blocked by the gateway's input guards ({', '.join(reasons)}).", param="messages"
    )
