"""Preference pairs from feedback: corrections and up-votes are chosen, replaced and down-voted answers rejected."""

from __future__ import annotations

import json

from gateway.loop.pairs import MAX_PAIRS_PER_PROMPT, preference_pairs
from gateway.loop.store import Feedback
from monitor.request_log import RequestRecord


def record(rid: str, question: str, answer: str) -> RequestRecord:
    prompt = json.dumps([{"role": "user", "content": question}])
    return RequestRecord(rid, 0.0, "desk", "/v1/chat/completions", 200, 1.0, prompt=prompt, completion=answer)


def vote(rid: str, rating: int | None, correction: str | None = None) -> Feedback:
    return Feedback(f"f-{rid}", rid, "desk", "desk@1", None, rating, correction, 0.0)


def test_a_correction_is_chosen_over_the_answer_it_replaced() -> None:
    pairs = preference_pairs([(vote("1", -1, "Pack light."), record("1", "What to pack?", "A piano."))])
    prompt = [{"role": "user", "content": "What to pack?"}]
    assert pairs == [{"prompt": prompt, "chosen": "Pack light.", "rejected": "A piano."}]


def test_up_and_down_votes_on_the_same_prompt_make_a_pair_and_lone_votes_make_none() -> None:
    items = [
        (vote("1", 1), record("1", "Best season?", "Spring, for the mild weather.")),
        (vote("2", -1), record("2", "Best season?", "Whatever.")),
        (vote("3", -1), record("3", "Other question?", "No idea.")),  # nothing chosen for it
        (vote("4", None), record("4", "Best season?", "Unrated.")),  # neither
    ]
    pairs = preference_pairs(items)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("Spring, for the mild weather.", "Whatever.")]


def test_one_prompt_gives_at_most_a_few_pairs() -> None:
    items = [(vote(str(i), -1, f"Fix {i}."), record(str(i), "Same?", f"Bad {i}.")) for i in range(5)]
    assert len(preference_pairs(items)) == MAX_PAIRS_PER_PROMPT
