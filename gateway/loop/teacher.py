"""Labels drifted prompts with a teacher model: any OpenAI-compatible chat endpoint (off unless configured)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import httpx

from gateway.loop.policy import TeacherSettings

log = logging.getLogger(__name__)


async def label(config: TeacherSettings, conversations: list[list[dict[str, Any]]]) -> list[str | None]:
    """The teacher's answer to each conversation (None where it failed: that prompt is left out, and logged)."""
    headers = {}
    if config.api_key_env:
        headers["authorization"] = f"Bearer {os.environ.get(config.api_key_env, '')}"
    limit = asyncio.Semaphore(4)
    async with httpx.AsyncClient(base_url=config.url.rstrip("/"), headers=headers, timeout=config.timeout_s) as client:

        async def one(messages: list[dict[str, Any]]) -> str | None:
            async with limit:
                try:
                    reply = await client.post(
                        "/chat/completions",
                        json={"model": config.model, "messages": messages, "max_tokens": config.max_tokens},
                    )
                    reply.raise_for_status()
                    return reply.json()["choices"][0]["message"]["content"] or None
                except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
                    log.warning("teacher %s could not label a prompt: %r", config.model, exc)
                    return None

        return list(await asyncio.gather(*(one(messages) for messages in conversations[: config.max_prompts])))
