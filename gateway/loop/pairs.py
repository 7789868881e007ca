"""Preference pairs from the feedback store, for a DPO run: per prompt, a chosen and a rejected answer.

Chosen: a correction, or an answer users up-voted. Rejected: the answer a correction replaced, or an answer
users down-voted. Answers the output guards blocked cannot be used: the gateway empties them before they
are logged, so no text remains to reject.
"""

from __future__ import annotations

import json

from gateway.loop.dataset import conversation_of
from gateway.loop.store import Feedback
from monitor.request_log import RequestRecord

# Pairs per prompt at most: one prompt with many votes would otherwise outweigh the rest.
MAX_PAIRS_PER_PROMPT = 4


def preference_pairs(items: list[tuple[Feedback, RequestRecord]]) -> list[dict]:
    """``{"prompt": messages, "chosen", "rejected"}`` records, deterministic in the order of ``items``."""
    prompts: dict[str, list[dict[str, str]]] = {}
    chosen: dict[str, list[str]] = {}
    rejected: dict[str, list[str]] = {}
    for item, record in items:
        conversation = conversation_of(record)
        if conversation is None:
            continue
        key = json.dumps(conversation, sort_keys=True)
        prompts[key] = conversation
        answer = (record.completion or "").strip()
        if item.correction and item.correction.strip():
            _add(chosen, key, item.correction.strip())
            if answer:  # the answer the user replaced is the one not to give
                _add(rejected, key, answer)
        elif item.rating == 1 and answer:
            _add(chosen, key, answer)
        elif item.rating == -1 and answer:
            _add(rejected, key, answer)
    pairs = []
    for key, good in chosen.items():
        made = 0
        for better in good:
            for worse in rejected.get(key, []):
                if better != worse and made < MAX_PAIRS_PER_PROMPT:
                    pairs.append({"prompt": prompts[key], "chosen": better, "rejected": worse})
                    made += 1
    return pairs


def _add(found: dict[str, list[str]], key: str, answer: str) -> None:
    if answer not in found.setdefault(key, []):
        found[key].append(answer)
