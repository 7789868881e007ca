"""Phrase rules for threats, incitement to self-harm and a speaker's own self-harm intent: the shapes a
statistical model trained on rare examples misses when no swear word comes with them ("I will find where you
live and hurt you").

Written by hand because no trained model with these categories, and no labeled threat or self-harm set,
ships offline (see docs/guards.md for what the Jigsaw model scores them and which packages were checked).
The rules follow the shape, not a list of sentences:

* ``threat``: a speaker's intent (first person, future) to do harm to a person (second or third person), or a
  prediction of harm aimed at the reader. Harm to things ("I will kill the process", "I'm going to murder
  this exam") has no person as its object and does not match.
* ``self_harm``: urging the reader to die or to harm themselves ("kill yourself", "go die", "nobody would
  miss you"). A wish that the reader die ("I hope you die") is a threat.
* ``self_harm_intent``: the speaker's own intent to die or self-harm ("I want to kill myself", "I've been
  feeling suicidal") or a request for a method ("how can I cut myself", "quickest way to end my life"):
  OpenAI's ``self-harm/intent``. A person saying this needs an answer, not a refusal, so its default action
  is ``flag``.
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
_FLAGS = re.IGNORECASE | re.VERBOSE
RULES: dict[str, re.Pattern[str]] = {
    "threat": re.compile(
        rf"""
        {_INTENT}\s+(?:[\w']+\s+){{0,6}}?{_HARM}\s+{_TARGET}\b            # I will (find where you live and) hurt you
      | \bi\s+know\s+where\s+(?:you|u|your\s+\w+)\s+(?:live|lives|sleep|sleeps|work|works)\b
      | \b(?:i'm|i\s+am|we're|we\s+are)\s+coming\s+(?:for|after)\s+{_TARGET}\b
      | \b(?:you|u)(?:'re|\s+are)\s+(?:so\s+)?(?:dead(?:\s+meat)?|going\s+to\s+die|gonna\s+die)\b
      | \b(?:you|u)\s+(?:will|'ll|are\s+going\s+to|gonna)\s+(?:die|bleed|pay\s+for\s+this|regret\s+the\s+day)\b
      | \bwatch\s+your\s+back\b
      | \b(?:hope|wish)\s+(?:you|u)\s+(?:die|get\s+(?:killed|raped|hit\s+by)|were\s+dead|rot)\b
      | \b(?:you|u)\s+deserve\s+to\s+(?:die|be\s+killed)\b
        """,
        _FLAGS,
    ),
    "self_harm": re.compile(
        r"""
        \b(?:kill|hang|shoot|off|hurt|cut|drown)\s+(?:yo)?urself\b
      | \bkys\b
      | \b(?:go|just|pls|please)\s+(?:and\s+)?(?:die|drop\s+dead)\b
      | \b(?:you|u)\s+(?:should|ought\s+to)\s+(?:just\s+)?(?:die|not\s+exist)\b
      | \b(?:world|everyone)\s+(?:would\s+be\s+)?better\s+off\s+(?:without\s+you|if\s+you\s+(?:died|were\s+dead))
      | \bnobody\s+would\s+(?:miss|care\s+if)\s+(?:you|u)\b
        """,
        _FLAGS,
    ),
    "self_harm_intent": re.compile(
        r"""
        \bi\s*(?:'m|\u2019m|\s+am)?\s*(?:want|wanna|going|gonna|plan(?:ning)?|intend|need|have\s+decided|
            (?:'ve|\s+have)\s+decided|will|'ll)\s+(?:to\s+)?(?:kill|hurt|cut|harm|off|starve|hang)\s+myself\b
      | \bi\s*(?:'m|\u2019m|\s+am)?\s*(?:want|wanna|going|gonna|plan(?:ning)?|(?:'ve|\s+have)\s+decided|will|'ll)
            \s+(?:to\s+)?(?:end|take)\s+my\s+(?:own\s+)?life\b
      | \bi\s*(?:'m|\u2019m|\s+am|'ve\s+been|\s+have\s+been|\s+feel|\s+keep\s+feeling)\s+
            (?:feeling\s+|so\s+|really\s+|very\s+)?suicidal\b
      | \bi\s+(?:don't|do\s+not)\s+want\s+to\s+(?:live|be\s+alive)\s+any\s*more\b
      # asking how: "how can I cut myself", "help me starve myself", "ways to self-harm", "best way to commit suicide"
      | \b(?:to|should\s+i|can\s+i|do\s+i|could\s+i|help\s+me)\s+(?:\w+\s+){0,2}?
            (?:kill|hurt|harm|cut|burn|starve|poison|hang|drown|overdose)\s+myself\b
      | \b(?:how\s+(?:to|do\s+i|can\s+i|should\s+i|could\s+i)|ways?|best|quickest|easiest|fastest|painless|methods?)\b
            [^.?!\n]{0,30}?
            \b(?:commit\s+suicide|kill\s+myself|end\s+my\s+(?:own\s+)?life|self[-\s]harm|overdose)\b
        """,
        _FLAGS,
    ),
}
RULE_SCORE = 0.9


def rule_scores(text: str) -> dict[str, float]:
    """Per rule category, ``RULE_SCORE`` when one of its shapes occurs in ``text``, else 0."""
    return {category: RULE_SCORE if rule.search(text) else 0.0 for category, rule in RULES.items()}
