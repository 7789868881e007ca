"""The heaviest bodies one client may send each endpoint within the default per-request caps, and a few past
them: what the worst-case test and the bench row (``bench.guards --attack``) send beside ordinary traffic."""

from __future__ import annotations

from gateway.config import RequestLimitSettings

_LIMITS = RequestLimitSettings()
_SENTENCE = "Please summarise the meeting notes about the budget for next quarter. "


def text(chars: int) -> str:
    return (_SENTENCE * (chars // len(_SENTENCE) + 1))[:chars]


def _tool(index: int) -> dict:
    return {
        "type": "function",
        "function": {"name": f"tool_{index}", "description": text(200), "parameters": {"type": "object"}},
    }


def worst_case_bodies(model: str) -> list[tuple[str, dict]]:
    """(path, body) pairs: at the caps (accepted, the most guard work one request can ask for) and past them
    (refused before any work)."""
    items, messages, parts = _LIMITS.max_prompt_items, _LIMITS.max_messages, _LIMITS.max_content_parts
    per_item = _LIMITS.max_guarded_chars // items
    return [
        # at the caps
        ("/v1/completions", {"model": model, "prompt": [text(per_item) for _ in range(items)], "max_tokens": 1}),
        (
            "/v1/chat/completions",
            {"model": model, "messages": [{"role": "user", "content": text(500)}] * messages, "max_tokens": 1},
        ),
        (
            "/v1/chat/completions",
            {
                "model": model,
                "messages": [{"role": "user", "content": [{"type": "text", "text": text(400)}] * parts}],
                "tools": [_tool(i) for i in range(_LIMITS.max_tools)],
                "n": _LIMITS.max_n,
                "max_tokens": 1,
            },
        ),
        (
            "/v1/responses",
            {"model": model, "input": [{"role": "user", "content": text(400)}] * parts, "max_output_tokens": 1},
        ),
        ("/v1/moderations", {"input": [text(8000)] * 64}),
        # past them: refused at once
        ("/v1/completions", {"model": model, "prompt": ["a"] * 100_000}),
        ("/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}], "n": 1000}),
        (
            "/v1/chat/completions",
            {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**18},
        ),
    ]
