"""One client sending the heaviest bodies each endpoint accepts within the default per-request caps, and a few
past them, in a loop: what ``tests/integration/test_worst_case_bodies.py`` and ``bench.gateway --attack`` run
beside ordinary traffic.

    python -m bench.attack --base http://127.0.0.1:8000 --model m --duration 10 [--connections 1]

prints {"statuses": {status: count}} when done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import NamedTuple

import httpx

from gateway.config import RequestLimitSettings

_LIMITS = RequestLimitSettings()
_SENTENCE = "Please summarise the meeting notes about the budget for next quarter. "


def text(chars: int) -> str:
    return (_SENTENCE * (chars // len(_SENTENCE) + 1))[:chars]


def digits(chars: int) -> str:
    return ("4155 0123 9876 " * (chars // 15 + 1))[:chars]


def _tool(index: int) -> dict:
    return {
        "type": "function",
        "function": {"name": f"tool_{index}", "description": text(200), "parameters": {"type": "object"}},
    }


class Body(NamedTuple):
    path: str
    json: dict
    within_caps: bool  # False: refused before any work (400)


class Answer(NamedTuple):
    within_caps: bool
    status: int
    code: str | None  # the OpenAI error's code, when there is one


def worst_case_bodies(model: str) -> list[Body]:
    """The bodies at the caps (accepted, the most guard work one request can ask for) and past them (refused
    before any work)."""
    items, messages, parts = _LIMITS.max_prompt_items, _LIMITS.max_messages, _LIMITS.max_content_parts
    per_item = _LIMITS.max_guarded_chars // items
    at_caps = [
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
        # digit groups: the costliest text per character for the phone matcher
        (
            "/v1/chat/completions",
            {"model": model, "messages": [{"role": "user", "content": digits(_LIMITS.max_guarded_chars)}]},
        ),
    ]
    past_caps = [
        ("/v1/completions", {"model": model, "prompt": ["a"] * 100_000}),
        ("/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}], "n": 1000}),
        (
            "/v1/chat/completions",
            {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**18},
        ),
    ]
    return [Body(path, body, True) for path, body in at_caps] + [Body(path, body, False) for path, body in past_caps]


def _error_code(response: httpx.Response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


async def attack(client: httpx.AsyncClient, model: str, stop: asyncio.Event, connections: int = 1) -> list[Answer]:
    """``connections`` loops, each sending every worst-case body in turn (each loop starting elsewhere in the
    list), until ``stop``; what each body was answered."""
    answers: list[Answer] = []
    bodies = worst_case_bodies(model)

    async def loop(offset: int) -> None:
        turn = offset
        while not stop.is_set():
            body = bodies[turn % len(bodies)]
            response = await client.post(body.path, json=body.json)
            answers.append(Answer(body.within_caps, response.status_code, _error_code(response)))
            turn += 1

    await asyncio.gather(*(loop(i * 3) for i in range(connections)))
    return answers


async def _main(base: str, model: str, duration: float, connections: int) -> dict:
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        running = asyncio.ensure_future(attack(client, model, stop, connections))
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline and not running.done():
            await asyncio.sleep(0.1)
        stop.set()
        answers = await running
    return {"statuses": dict(Counter(answer.status for answer in answers))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the gateway's base URL")
    parser.add_argument("--model", required=True)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=1)
    arguments = parser.parse_args()
    print(json.dumps(asyncio.run(_main(arguments.base, arguments.model, arguments.duration, arguments.connections))))


if __name__ == "__main__":
    main()
