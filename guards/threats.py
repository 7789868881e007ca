"""Phrase rules for threats and incitement to self-harm: the shapes a statistical model trained on rare
examples misses when no swear word comes with them ("I will find where you live and hurt you").

Written by hand because no trained model with a threat category that catches these ships offline (see
docs/guards.md for what the Jigsaw model scores them). The rules follow the shape of a threat, not a list of
sentences: a speaker's intent (first person, future) to do harm to a person (second or third person), a
prediction of harm aimed at the reader, or an urging to die or self-harm. Harm to things ("I will kill the
process", "I'm going to murder this exam") has no person as its object and does not match.
"""

from __future__ import annotations

import re

# Who a threat is aimed at: the reader, a third person, or someone's family.
_TARGET = (
    r"(?:you|u|ya|him|her|them|(?:your|his|her|their)\s+(?:\w+\s+)?(?:family|kids?|children|wife|husband|mom|"
    r"mother|dad|father|sister|brother|face|throat|neck|legs?|arms?|skull|head|house|home))"
)
# Violent acts only: "get", "find" or "end" would make "I'll get you the report" a threat.
_HARM = (
    r"(?:kill|murder|hurt|harm|stab|shoot|strangle|choke|punch|rape|torture|burn|drown|hang|butcher|"
    r"slaughter|bury|execute|cripple|maim|break|smash|bash|gut|behead|poison|slit|hunt\s+down|beat\s+up|"
    r"make\s+(?:you|him|her|them)\s+(?:pay|suffer|bleed|disappear))"
)
_INTENT = (
    r"\b(?:i|we)\s*(?:'ll|\u2019ll|\s+will|\s+shall|(?:'m|\u2019m|\s+am|'re|\s+are)\s+(?:going\s+to|gonna)|"
    r"\s+gonna|\s+want\s+to|\s+wanna|\s+would\s+love\s+to|\s+could\s+easily)"
)
_RULES = re.compile(
    rf"""
    {_INTENT}\s+(?:[\w']+\s+){{0,6}}?{_HARM}\s+{_TARGET}\b                # I will (find where you live and) hurt you
  | \bi\s+know\s+where\s+(?:you|u|your\s+\w+)\s+(?:live|lives|sleep|sleeps|work|works)\b
  | \b(?:i'm|i\s+am|we're|we\s+are)\s+coming\s+(?:for|after)\s+{_TARGET}\b
  | \b(?:you|u)(?:'re|\s+are)\s+(?:so\s+)?(?:dead(?:\s+meat)?|going\s+to\s+die|gonna\s+die)\b
  | \b(?:you|u)\s+(?:will|'ll|are\s+going\s+to|gonna)\s+(?:die|bleed|pay\s+for\s+this|regret\s+the\s+day)\b
  | \bwatch\s+your\s+back\b
  | \b(?:kill|hang|shoot|off|hurt|cut|drown)\s+(?:yo)?urself\b                # incitement to self-harm
  | \bkys\b
  | \b(?:go|just|pls|please)\s+(?:and\s+)?(?:die|drop\s+dead)\b
  | \b(?:you|u)\s+(?:should|deserve\s+to|ought\s+to)\s+(?:just\s+)?(?:die|be\s+killed|not\s+exist)\b
  | \b(?:hope|wish)\s+(?:you|u)\s+(?:die|get\s+(?:killed|raped|hit\s+by)|were\s+dead|rot)\b
  | \b(?:world|everyone)\s+(?:would\s+be\s+)?better\s+off\s+(?:without\s+you|if\s+you\s+(?:died|were\s+dead))
  | \bnobody\s+would\s+(?:miss|care\s+if)\s+(?:you|u)\b
    """,
    re.IGNORECASE | re.VERBOSE,
)
RULE_SCORE = 0.9


def threat_score(text: str) -> float:
    """``RULE_SCORE`` when a threat or self-harm incitement shape occurs in ``text``, else 0."""
    return RULE_SCORE if _RULES.search(text) else 0.0
