"""The prompt-injection and jailbreak guard (OWASP LLM01): phrase rules plus a linear classifier on ONNX.

The rules catch the canonical shapes with near certainty (an instruction to drop earlier instructions, a
request for the hidden prompt, chat-template tokens, "developer mode", "DAN"); the classifier (trained by
guards/injection_export.py) scores the paraphrases. Text *about* prompts, rules or jailbreaking is not an
instruction to the model, and neither the rules nor the training set treat it as one.
"""

from __future__ import annotations

import re

from guards.config import InjectionSettings
from guards.types import Finding

_INSTRUCTIONS = (
    r"(?:instructions?|prompts?|rules|guidelines|directions|directives|guardrails|restrictions|programming|context)"
)
_RULES = re.compile(
    rf"""
    \b(?:ignore|disregard|forget|override|bypass|skip)\s+(?:all\s+|any\s+|the\s+|your\s+|my\s+|of\s+)*
        (?:previous|prior|above|earlier|preceding|initial|original|system|safety|existing)\s+{_INSTRUCTIONS}
  | \b(?:ignore|disregard|forget)\s+(?:everything|all)\s+(?:you\s+were\s+told|above|before|previously)
  | \b(?:reveal|print|show|output|repeat|dump|leak|display)\s+(?:me\s+)?(?:your|the)\s+
        (?:full\s+|hidden\s+|secret\s+|original\s+|initial\s+)*
        (?:system\s+(?:prompt|message|instructions)|initial\s+prompt|hidden\s+(?:prompt|instructions))
  | <\|im_start\|>|<\|(?:system|endoftext)\|>|\[/?INST\]|<</?SYS>>
  | \b(?:developer|god|jailbreak|dan|unrestricted)\s+mode\s+(?:enabled|activated|on)\b
  | \bdo\s+anything\s+now\b
  | \byou\s+(?:are|have\s+been)\s+(?:now\s+)?(?:freed|jailbroken|unshackled)\b
  | \b(?:no\s+longer|not)\s+bound\s+by\s+(?:any\s+|your\s+)?(?:rules|guidelines|policies|restrictions)
    """,
    re.IGNORECASE | re.VERBOSE,
)
RULE_SCORE = 0.95
# Every match of _RULES contains one of these (case-folded): most prompts contain none, and a few substring
# searches cost a tenth of running the regex, whose alternatives Python tries one by one at each position.
_ANCHORS = (
    "instruction", "prompt", "rules", "guideline", "direction", "directive", "guardrail", "restriction",
    "programming", "context", "ignore", "disregard", "forget", "system", "hidden", "<|", "[inst", "[/inst",
    "<<sys", "<</sys", "mode", "anything", "freed", "jailbroken", "unshackled", "bound",
)  # fmt: skip
# An instruction to the model needs a few words; on fewer, the classifier would judge a greeting by the
# weight of one word. The rules still read every text ("DAN mode enabled").
MIN_CLASSIFIER_WORDS = 4


def rule_score(text: str) -> float:
    folded = text.casefold()
    if not any(anchor in folded for anchor in _ANCHORS):
        return 0.0
    return RULE_SCORE if _RULES.search(text) else 0.0


class InjectionGuard:
    """One finding per checked text, entity ``INJECTION``: the stronger of the rule and classifier scores."""

    name = "injection"

    def __init__(self, config: InjectionSettings, classifier=None) -> None:  # noqa: ANN001 - a TextClassifier
        self._config = config
        self._classifier = classifier

    def scores(self, texts: list[str]) -> list[float]:
        model = self._classifier.scores(texts)[:, 0] if self._classifier is not None else [0.0] * len(texts)
        return [
            max(rule_score(text), float(p) if len(text.split()) >= MIN_CLASSIFIER_WORDS else 0.0)
            for text, p in zip(texts, model, strict=True)
        ]

    def finding(self, text: str, score: float) -> Finding:
        action = self._config.action if score >= self._config.threshold else "allow"
        return Finding("INJECTION", 0, len(text), self.name, action, score)

    def inspect(self, text: str, *, starts_in_code: bool = False) -> list[Finding]:
        return [self.finding(text, self.scores([text])[0])]
