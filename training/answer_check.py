"""Did the candidate's greedy answers move toward the held-out references, slice by slice?

The gate's loss margins average over tokens, so a candidate can cut the new slice's loss by 70% and still
answer one held-out prompt in three in the old style: the argmax did not flip. This check reads what users
would read. For each held-out prompt the baseline's and the candidate's greedy answers are scored against the
reference answer (ROUGE-L); on the new slice the candidate must come closer than the baseline on a share of
the prompts ("wins"), on the old slice it must stay about as close ("holds"), for each generation the
slice holds (its ``origin``: the run that taught it) as well as over all of it: an average over two earlier
topics let a candidate forget half of one of them (seen in the second-drift e2e).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from training.config import Gate
from training.evaluate import GateVerdict, Miss, rouge_l

# At or above this ROUGE-L an answer already says what the reference says: it counts as a win even when the
# baseline's answer was just as close (both learned it; neither can come closer).
MATCHED = 0.95
EXAMPLE_CHARS = 200


class SliceAnswers(msgspec.Struct, frozen=True):
    """One eval slice's held-out answers: how many came closer to the reference, and how many stayed as close."""

    prompts: int
    wins: int  # candidate closer to the reference than the baseline (or matching it)
    holds: int  # candidate at most ``tolerance`` less close than the baseline
    baseline_rouge_l: float  # means over the slice's prompts
    candidate_rouge_l: float
    # The first prompt the candidate did not win, so the timeline shows what a miss looks like.
    example: dict[str, str] | None = None
    # Per origin, where the slice holds several: [prompts, holds].
    origins: dict[str, list[int]] = msgspec.field(default_factory=dict)

    @property
    def win_share(self) -> float:
        return self.wins / self.prompts if self.prompts else 0.0

    @property
    def hold_share(self) -> float:
        return self.holds / self.prompts if self.prompts else 0.0

    def weakest_hold(self) -> tuple[str, int, int]:
        """The origin holding least (``""`` for the whole slice when no origin of 2+ prompts holds less), with
        its holds and prompts."""
        weakest = ("", self.holds, self.prompts)
        for origin, (prompts, holds) in sorted(self.origins.items()):
            if prompts >= 2 and holds / prompts < weakest[1] / weakest[2]:
                weakest = (origin, holds, prompts)
        return weakest


def compare(
    slices: list[str],
    prompts: list[str],
    references: list[str],
    baseline: list[str],
    candidate: list[str],
    tolerance: float,
    redact: Callable[[str], str] | None = None,
    origins: list[str] | None = None,
) -> dict[str, SliceAnswers]:
    """Per slice name, the candidate's answers against the baseline's (all lists are aligned by prompt,
    ``origins`` too when given); ``redact`` cleans the example's texts (a candidate may have learned to leak PII)."""
    rows: dict[str, list[tuple[str, str, str, str, float, float]]] = {}
    origin_of: dict[str, list[str]] = {}
    for name, prompt, reference, theirs, ours, origin in zip(
        slices, prompts, references, baseline, candidate, origins or [""] * len(slices), strict=True
    ):
        rows.setdefault(name, []).append(
            (prompt, reference, theirs, ours, rouge_l(theirs, reference), rouge_l(ours, reference))
        )
        origin_of.setdefault(name, []).append(origin)
    compared = {}
    for name, found in rows.items():
        won = [ours > theirs or ours >= MATCHED for *_, theirs, ours in found]
        held = [ours >= theirs - tolerance for *_, theirs, ours in found]
        lost = next((row for row, win in zip(found, won, strict=True) if not win), None)
        by_origin: dict[str, list[int]] = {}
        for origin, hold in zip(origin_of[name], held, strict=True):
            counts = by_origin.setdefault(origin, [0, 0])
            counts[0] += 1
            counts[1] += hold
        compared[name] = SliceAnswers(
            prompts=len(found),
            wins=sum(won),
            holds=sum(held),
            baseline_rouge_l=round(sum(row[4] for row in found) / len(found), 4),
            candidate_rouge_l=round(sum(row[5] for row in found) / len(found), 4),
            example=None if lost is None else _example(lost[:4], redact or (lambda text: text)),
            origins=by_origin if len(by_origin) > 1 else {},
        )
    return compared


def _example(texts: tuple[str, ...], redact: Callable[[str], str]) -> dict[str, str]:
    names = ("prompt", "reference", "baseline", "candidate")
    return {name: redact(text)[:EXAMPLE_CHARS] for name, text in zip(names, texts, strict=True)}


def check(gate: Gate, verdict: GateVerdict, compared: dict[str, SliceAnswers] | None) -> GateVerdict:
    """``verdict`` with the gate's answer checks added: each share under its floor is one more miss."""
    reasons, misses, limits = list(verdict.reasons), list(verdict.misses), dict(verdict.limits)
    for kind, floors in (("wins", gate.answer_wins), ("holds", gate.answer_holds)):
        for name, floor in sorted(floors.items()):
            check_name = f"answers_{kind}:{name}"
            limits[check_name] = floor
            found = (compared or {}).get(name)
            if found is None:
                reasons.append(f"no held-out answers were generated for eval set {name!r}")
                misses.append(Miss(check_name, 0.0, floor, ceiling=False))
                continue
            origin, count, prompts = ("", found.wins, found.prompts) if kind == "wins" else found.weakest_hold()
            share = count / prompts if prompts else 0.0
            if share < floor:
                what = "closer to the reference than" if kind == "wins" else "about as close to the reference as"
                taught = f" (taught by {origin})" if origin else ""
                reasons.append(
                    f"{name}{taught}: {count}/{prompts} held-out answers {what} the baseline's "
                    f"({share:.0%} < {floor:.0%}; ROUGE-L {found.baseline_rouge_l} -> {found.candidate_rouge_l})"
                )
                misses.append(Miss(check_name, round(share, 4), floor, ceiling=False))
    return GateVerdict(not reasons, tuple(reasons), tuple(misses), limits)
