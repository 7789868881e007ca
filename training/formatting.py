"""Chat-template formatting with loss on the assistant's tokens only, and the token-length distribution.

The template is rendered as text, the assistant spans are found by rendering each prefix, and the
tokenizer's offsets map them onto tokens. This works with any template, where the tokenizer's
``return_assistant_tokens_mask`` needs ``{% generation %}`` markers most templates lack.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import msgspec

from training.data import Example

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

IGNORE = -100


class Encoded(msgspec.Struct, frozen=True):
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE for label in self.labels)


class LengthStats(msgspec.Struct, frozen=True):
    count: int
    min: int
    p50: int
    p90: int
    p99: int
    max: int

    @classmethod
    def of(cls, lengths: list[int]) -> LengthStats:
        ordered = sorted(lengths)

        def rank(q: float) -> int:
            return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

        return cls(len(ordered), ordered[0], rank(0.5), rank(0.9), rank(0.99), ordered[-1])


def assistant_spans(example: Example, tokenizer: PreTrainedTokenizerBase) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of every assistant turn (with its end marker)."""
    messages = [{"role": m.role, "content": m.content} for m in example.messages]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
        if not (text.startswith(before) and text.startswith(through)):
            raise ValueError("the chat template does not render conversations prefix by prefix")
        spans.append((len(before), len(through)))
    return text, spans


def encode(example: Example, tokenizer: PreTrainedTokenizerBase, max_length: int | None = None) -> Encoded:
    text, spans = assistant_spans(example, tokenizer)
    tokens = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = tokens["input_ids"]
    labels = [
        token if any(start <= begin < end for start, end in spans) else IGNORE
        for token, (begin, _) in zip(ids, tokens["offset_mapping"], strict=True)
    ]
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return Encoded(ids, labels)


def choose_max_seq_length(stats: LengthStats, cap: int, multiple: int = 64) -> int:
    """p99 rounded up to a multiple of ``multiple`` (kernels like it), never above ``cap``."""
    return min(cap, multiple * math.ceil(stats.p99 / multiple))


def collate(batch: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors; padding is masked out of attention and of the loss."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        size = len(example.input_ids)
        ids[row, :size] = torch.tensor(example.input_ids)
        labels[row, :size] = torch.tensor(example.labels)
        mask[row, :size] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
