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
from gateway.edge.guard_work import Deadline
from gateway.errors import ContentFiltered, FeatureNotConfigured
from guards import Decision, GuardModels, Guards, GuardsSettings, RedactionContext, StreamRedactor
from guards.semantic.encoder import DEFAULT_DIR_NAME
from monitor import metrics

CONTENT_FILTER = "content_filter"
RESPONSES = "/v1/responses"


def guard_models_dir(settings: Settings) -> Path:
    return settings.models_dir / "guards"


class GuardSet:
    """Each model route's guards, built once per worker; routes without their own config share the default."""

    def __init__(self, settings: Settings) -> None:
        self._models = models = GuardModels(guard_models_dir(settings))
        self._default = default = Guards(settings.guards, models) if settings.guards.enabled else None
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

    def for_moderation(self, model: str | None) -> Guards:
        """The guards that judge a moderation request: the named route's, else the gateway's default. With
        guards switched off there is nothing to judge with (building the default models here would export and
        train them on a request's time): 404 ``feature_not_configured``."""
        found = self._by_model.get(model) if model is not None else None
        if found is not None or (found := self._default) is not None:
            return found
        raise FeatureNotConfigured("Guards are off in this gateway (set `guards.enabled: true`), so nothing moderates.")


def export_guard_models(settings: Settings) -> None:
    """Export the default guard models any route uses, once, before server workers start (each would race
    to do it): the Jigsaw toxicity model, the profanity model, the injection classifier, the model tier's
    encoder and heads. A file check when they exist."""
    configs: list[GuardsSettings] = [settings.guards, *(r.guards for r in settings.models if r.guards is not None)]
    stages = [stage for config in configs if config.enabled for stage in (config.input, config.output)]
    directory = guard_models_dir(settings)
    kinds = {s.toxicity.model.kind for s in stages if s.toxicity.enabled and not s.toxicity.model.path}
    if "jigsaw" in kinds:
        from guards.jigsaw_export import ensure_jigsaw_model

        ensure_jigsaw_model(directory)
    if "linear" in kinds:
        from guards.toxicity_export import ensure_toxicity_model

        ensure_toxicity_model(directory)
    if any(
        c.enabled and c.input.injection.enabled and c.input.injection.classifier and not c.input.injection.path
        for c in configs
    ):
        from guards.injection_export import ensure_injection_model

        ensure_injection_model(directory)
    if any(c.enabled and c.input.semantic.enabled for c in configs):
        from monitor.embedder_export import ensure_embedder

        ensure_embedder(settings.models_dir / DEFAULT_DIR_NAME)  # the encoder the drift monitor shares
        GuardModels(directory).semantic()  # then the model tier's heads


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

    def check_prompt(self, path: str, body: bytes, deadline: Deadline) -> bytes:
        """The body to send upstream: unchanged, or with prompts redacted. Raises 400 when a guard blocks, and
        :class:`GuardTimeout` once ``deadline`` has passed (checked before each text)."""
        document = msgspec.json.decode(body)
        changed = False
        for holder, key, role in _prompt_slots(path, document):
            deadline.check()
            verdict = self.guards.input.run(holder[key], self.context, role)
            self._note(verdict.decisions)
            if verdict.blocked:
                raise _blocked_prompt(verdict.decisions, "input" if path == RESPONSES else "messages")
            if verdict.text != holder[key]:
                holder[key] = verdict.text
                changed = True
        self.prompt_text = _prompt_for_log(path, document)
        self.user_text = user_words(path, document)
        return msgspec.json.encode(document) if changed else body

    # -- output -----------------------------------------------------------------------------------------

    def _check_response(self, document: Any, body: bytes, deadline: Deadline) -> bytes:
        """A Responses API answer: each output text redacted, or emptied with the response ``incomplete``
        for ``content_filter`` (what OpenAI answers when its own filter stops a response)."""
        changed = False
        for part in _output_texts(document):
            deadline.check()
            verdict = self.guards.output.run(part["text"], self.context)
            self._note(verdict.decisions)
            if verdict.blocked:
                part["text"] = ""
                _mark_filtered(document)
                changed = True
            elif verdict.text != part["text"]:
                part["text"] = verdict.text
                changed = True
            if self.answer_text is None:
                self.answer_text = part["text"]
        return msgspec.json.encode(document) if changed else body

    def check_answer(self, path: str, body: bytes, deadline: Deadline) -> bytes:
        """A whole (non-streamed) answer: each choice redacted, or emptied with finish_reason content_filter."""
        document = msgspec.json.decode(body)
        if path == RESPONSES:
            return self._check_response(document, body, deadline)
        changed = False
        for choice in document.get("choices") or ():
            deadline.check()
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
        response_stream = _ResponseStream()
        self.answer_text = ""
        pending = b""
        async for chunk in chunks:
            pending += chunk
            *events, pending = pending.split(b"\n\n")
            for event in events:
                if path == RESPONSES:
                    out, blocked = self._filter_response_event(event, response_stream)
                    if out:
                        yield out
                    if blocked:
                        return  # a Responses stream ends with its last event, no [DONE]
                    continue
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

    def _filter_response_event(self, event: bytes, stream: _ResponseStream) -> tuple[bytes, bool]:
        """One Responses API event (``event: TYPE`` then ``data: {...}``) with its output text redacted.

        Text arrives as ``response.output_text.delta`` events; the ``...done``/``response.completed`` events
        that repeat it whole get the redacted text. A block ends the stream with ``response.incomplete``.
        """
        head, _, data = event.partition(b"data: ")
        if not data.startswith(b"{"):
            return event + b"\n\n", False
        document = msgspec.json.decode(data)
        kind = document.get("type")
        key = (document.get("output_index", 0), document.get("content_index", 0))
        out = b""
        if kind in ("response.created", "response.in_progress"):
            stream.response = document.get("response")
            return event + b"\n\n", False
        if kind in ("response.output_text.delta", "response.output_text.done"):
            redactor = stream.redactors.get(key) or stream.redactors.setdefault(key, self.guards.stream(self.context))
            step = redactor.feed(document.get("delta") or "") if kind.endswith("delta") else redactor.flush()
            self._note(tuple(step.decisions))
            stream.texts[key] = stream.texts.get(key, "") + step.text
            if key == (0, 0):
                self.answer_text = stream.texts[key]
            delta = {**document, "type": "response.output_text.delta", "delta": step.text}
            delta.pop("text", None)
            if kind.endswith("delta") or step.text:
                out = _response_event(delta)
            if step.blocked:
                return out + stream.filtered(document.get("sequence_number", 0)), True
            if kind.endswith("delta"):
                return out, False
            document["text"] = stream.texts[key]
        elif kind == "response.content_part.done":
            part = document.get("part")
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                part["text"] = self._final_text(stream, key, part["text"])
        elif kind == "response.output_item.done":
            item = document.get("item")
            for index, part in enumerate(item.get("content") or () if isinstance(item, dict) else ()):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = self._final_text(stream, (key[0], index), part["text"])
        elif kind in ("response.completed", "response.incomplete"):
            response = document.get("response") or {}
            for index, item in enumerate(response.get("output") or ()):
                for part_index, part in enumerate(item.get("content") or () if isinstance(item, dict) else ()):
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        part["text"] = self._final_text(stream, (index, part_index), part["text"])
        else:
            return event + b"\n\n", False
        return out + head + b"data: " + msgspec.json.encode(document) + b"\n\n", False

    def _final_text(self, stream: _ResponseStream, key: tuple[int, int], text: str) -> str:
        """The redacted text streamed for ``key``; text that never came as deltas is checked whole."""
        if key in stream.texts:
            return stream.texts[key]
        verdict = self.guards.output.run(text, self.context)
        self._note(verdict.decisions)
        return "" if verdict.blocked else verdict.text


class _ResponseStream:
    """One streamed Responses API answer's redaction state, by (output item, content part)."""

    __slots__ = ("redactors", "texts", "response")

    def __init__(self) -> None:
        self.redactors: dict[tuple[int, int], StreamRedactor] = {}
        self.texts: dict[tuple[int, int], str] = {}
        self.response: dict | None = None

    def filtered(self, sequence_number: int) -> bytes:
        """The last event of a stream stopped by an output guard."""
        response = {**(self.response or {}), "status": "incomplete"}
        response["incomplete_details"] = {"reason": CONTENT_FILTER}
        event = {"type": "response.incomplete", "response": response, "sequence_number": sequence_number + 1}
        return _response_event(event)


def _response_event(document: dict) -> bytes:
    return b"event: " + document["type"].encode() + b"\ndata: " + msgspec.json.encode(document) + b"\n\n"


def _output_texts(document: Any) -> list[dict]:
    """The ``output_text`` parts of a Responses API answer's message items."""
    return [
        part
        for item in document.get("output") or ()
        if isinstance(item, dict)
        for part in item.get("content") or ()
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    ]


def _mark_filtered(document: dict) -> None:
    document["status"] = "incomplete"
    document["incomplete_details"] = {"reason": CONTENT_FILTER}


def _prompt_slots(path: str, document: Any) -> list[tuple[Any, Any, str | None]]:
    """(container, key, chat role) triples holding prompt text, so a verdict can replace it in place. The role
    tells the injection guard whose words these are (None: a completions prompt, always the caller's)."""
    slots: list[tuple[Any, Any, str | None]] = []
    if path == "/v1/chat/completions":
        for message in document.get("messages") or ():
            slots += _message_slots(message)
    elif path == "/v1/completions":
        prompt = document.get("prompt")
        if isinstance(prompt, str):
            slots.append((document, "prompt", None))
        elif isinstance(prompt, list):
            slots += [(prompt, index, None) for index, item in enumerate(prompt) if isinstance(item, str)]
    elif path == RESPONSES:
        if isinstance(document.get("instructions"), str):
            slots.append((document, "instructions", "system"))  # the developer's, like a system turn
        slots += _responses_input_slots(document)
    return slots


def _responses_input_slots(document: Any, role: str | None = None) -> list[tuple[Any, Any, str | None]]:
    """The plain text of a Responses API ``input``: the string itself (the user's), or its message items' text
    (all roles, or only ``role``'s), and tool outputs as the ``tool`` role's; tool calls, images and files are
    no text a guard reads."""
    input_ = document.get("input")
    if isinstance(input_, str):
        return [(document, "input", "user")] if role in (None, "user") else []
    slots: list[tuple[Any, Any, str | None]] = []
    for item in input_ if isinstance(input_, list) else ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call_output" and isinstance(item.get("output"), str):
            if role in (None, "tool"):
                slots.append((item, "output", "tool"))
            continue
        if "role" not in item or item.get("type", "message") != "message":
            continue
        if role is None or item["role"] == role:
            slots += _message_slots(item)
    return slots


def _message_slots(message: dict) -> list[tuple[Any, Any, str | None]]:
    """A message's text, with its role: its string content, or the text of its content parts."""
    content, role = message.get("content"), str(message.get("role"))
    if isinstance(content, str):
        return [(message, "content", role)]
    if isinstance(content, list):
        return [
            (part, "text", role) for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
    return []


def responses_input_texts(input_: Any, role: str | None = None) -> list[str]:
    """The plain texts of a Responses API ``input`` (see :func:`_responses_input_slots`)."""
    return [holder[key] for holder, key, _ in _responses_input_slots({"input": input_}, role)]


def user_words(path: str, document: Any) -> str:
    """The text drift detection judges a request by: its user turns (chat) or its prompt (completions)."""
    if path == "/v1/completions":
        prompt = document.get("prompt")
        return prompt if isinstance(prompt, str) else ""
    if path == RESPONSES:
        return "\n".join(responses_input_texts(document.get("input"), role="user"))
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
    """The (redacted) prompt as the log keeps it: the chat messages as JSON (a Responses API input as the chat
    messages it amounts to, so feedback on it trains like chat), or the completion prompt."""
    if path == "/v1/chat/completions":
        return msgspec.json.encode(document.get("messages")).decode()
    if path == RESPONSES:
        return msgspec.json.encode(_responses_as_chat(document)).decode()
    prompt = document.get("prompt")
    return prompt if isinstance(prompt, str) else msgspec.json.encode(prompt).decode()


def _responses_as_chat(document: Any) -> list[dict[str, str]]:
    """``instructions`` as the system turn, then each message item with its text parts joined."""
    messages = [{"role": "system", "content": document["instructions"]}] if document.get("instructions") else []
    input_ = document.get("input")
    if isinstance(input_, str):
        return [*messages, {"role": "user", "content": input_}]
    for item in input_ if isinstance(input_, list) else ():
        texts = [holder[key] for holder, key, _ in _message_slots(item)] if isinstance(item, dict) else []
        if texts and isinstance(item.get("role"), str) and item.get("type", "message") == "message":
            messages.append({"role": item["role"], "content": "\n".join(texts)})
    return messages


def _answer_slot(path: str, choice: dict) -> tuple[dict | None, str]:
    if path == "/v1/chat/completions":
        return choice.get("message"), "content"
    return choice, "text"


def _delta_slot(path: str, choice: dict) -> tuple[dict | None, str]:
    if path == "/v1/chat/completions":
        return choice.get("delta"), "content"
    return choice, "text"


def _blocked_prompt(decisions: tuple[Decision, ...], param: str) -> ContentFiltered:
    reasons = sorted({f"{d.guard}: {d.entity.lower()}" for d in decisions if d.action == "block"})
    return ContentFiltered(f"The prompt was blocked by the gateway's input guards ({', '.join(reasons)}).", param=param)
