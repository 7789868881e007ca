"""The fast path for pattern PII: one combined regex pass, then a validity check per candidate.

Written by hand rather than through Presidio's recognizers because Presidio's ``AnalyzerEngine`` needs an
NLP engine (spaCy: seconds to import, milliseconds per text) and runs every recognizer's regexes as a
separate pass; one alternation over the text plus cheap checksums costs tens of microseconds per 1,000
characters (see bench/guards.py). Phone numbers come from ``phonenumbers`` (guards/pii.py), not from here.

IPv4 rule (versions are not addresses): a dotted quad is not an IP address when it is part of a longer
dotted run (``1.2.3.4.5``), when a version marker stands right before it (``v1.2.3.4``, ``version 1.2.3.4``,
``==1.2.3.4``, ``pkg@1.2.3.4``), or when it sits in Markdown code (a fenced block or an inline span)
without an address context: a keyword such as ``ip``/``host``/``server``/``ssh`` in the 24 characters
before it, ``://`` or ``@`` right before it, or a ``:port`` or ``/prefix`` right after it.
"""

from __future__ import annotations

import bisect
import re

from guards.checks import IBAN_LENGTHS, card_ok, iban_ok, ip_ok, looks_random, ssn_ok

# Base64/base64url bodies; "=" padding may only end a token (so "key=..." splits before the value).
_TOKEN_CHARS = r"A-Za-z0-9+/_\-"

# Every entity starts at a word start: the one look-behind in front skips the positions inside words for all
# alternatives at once, which makes the pass several times faster on prose.
_SCAN = re.compile(
    r"""
  (?<![A-Za-z0-9_])(?:
    (?P<SECRET>
        \bsk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d\d-)?[A-Za-z0-9_\-]{20,}   # OpenAI, Anthropic
      | \b(?:AKIA|ASIA)[0-9A-Z]{16}\b                                            # AWS access key id
      | \bgh[pousr]_[A-Za-z0-9]{36,}\b | \bgithub_pat_[A-Za-z0-9_]{22,}\b          # GitHub
      | \bxox[abposr]-[A-Za-z0-9\-]{10,}                                         # Slack
      | \bAIza[0-9A-Za-z_\-]{35}                                                 # Google API key
      | \b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}                                   # Stripe secret/restricted
      | \beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}        # JWT
    )
  | (?P<EMAIL>
        (?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]*@
        [A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b
    )
  | (?P<IBAN>\b[A-Z]{2}\d\d(?:\ ?[A-Z0-9]){11,30})
  | (?P<CREDIT_CARD>(?<!\d)(?<!\d[\ \-])\d(?:[\ \-]?\d){11,18}(?![\ \-]?\d))
  | (?P<US_SSN>(?<![\d\-])(?P<area>\d{3})(?P<sep>[\ \-])(?P<group>\d\d)(?P=sep)(?P<serial>\d{4})(?![\d\-]))
  | (?P<IPV4>(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?!\.?\w))
  | (?P<IPV6>(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%[A-Za-z0-9]+)?(?![\w:]))
  | (?P<TOKEN>(?<![@TOK@])[@TOK@]{24,}={0,2}(?![@TOK@=]))
  )
    """.replace("@TOK@", _TOKEN_CHARS),
    re.VERBOSE,
)
_TOKEN = re.compile(f"(?<![{_TOKEN_CHARS}])[{_TOKEN_CHARS}]{{24,}}={{0,2}}(?![{_TOKEN_CHARS}=])")
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]+`", re.DOTALL)
_VERSION_BEFORE = re.compile(
    r"(?:\b[vV]|\b(?:version|ver|release|rel|rev|build|tag|python|node|java|go|ruby|perl|php)\.?\s*"
    r"|[=~^<>@]=?\s*)\Z",
    re.IGNORECASE,
)
_ADDRESS_BEFORE = re.compile(
    r"(?:\b(?:ip|ipv4|ips|host|hostname|addr|address|server|ssh|ping|curl|wget|connect|bind|listen|dns"
    r"|nameserver|gateway|proxy|peer|client|remote)\b[^\n]*|//|@)\Z",
    re.IGNORECASE,
)
_ADDRESS_AFTER = re.compile(r"[:/]\d")


def scan(text: str, min_entropy_bits: float, starts_in_code: bool = False) -> list[tuple[str, int, int]]:
    """Every validated pattern entity in ``text`` as ``(entity, start, end)``, in order, not overlapping.

    ``starts_in_code`` tells the scan that ``text`` begins inside a fenced code block (the streaming
    redactor knows this from what it has already emitted).
    """
    found: list[tuple[str, int, int]] = []
    code: list[int] | None = None
    pos = 0
    search = _SCAN.search
    while (m := search(text, pos)) is not None:
        kind = m.lastgroup
        start, end = m.span()
        if kind == "US_SSN":
            ok = ssn_ok(m["area"], m["group"], m["serial"])
        elif kind == "CREDIT_CARD":
            ok = card_ok(m[0].replace(" ", "").replace("-", ""))
        elif kind == "IBAN":
            end = _iban_end(text, start, end)
            ok = end > 0
        elif kind == "IPV4":
            if code is None:
                code = _code_spans(text, starts_in_code)
            ok = ip_ok(m[0]) and not _is_version(text, start, end, code)
            kind = "IP_ADDRESS"
        elif kind == "IPV6":
            ok = ip_ok(m[0])
            kind = "IP_ADDRESS"
        elif kind == "TOKEN":
            ok = looks_random(m[0], min_entropy_bits)
            kind = "SECRET"
        else:
            ok = True
        if ok:
            found.append((kind, start, end))
            pos = end
            continue
        # A candidate that failed its check may still start a random-looking token (say a secret that
        # begins like an IBAN); otherwise move one character on.
        token = _TOKEN.match(text, start) if kind in ("IBAN", "CREDIT_CARD") else None
        if token is not None and looks_random(token[0], min_entropy_bits):
            found.append(("SECRET", start, token.end()))
            pos = token.end()
            continue
        pos = start + 1
    return found


def _iban_end(text: str, start: int, end: int) -> int:
    """Where the IBAN starting at ``start`` ends (its country fixes its length), or 0 if it is none."""
    length = IBAN_LENGTHS.get(text[start : start + 2], 0)
    if length == 0:
        return 0
    chars: list[str] = []
    i = start
    while i < end and len(chars) < length:
        if text[i] != " ":
            chars.append(text[i])
        i += 1
    if len(chars) < length or (i < len(text) and text[i].isalnum()):
        return 0
    return i if iban_ok("".join(chars)) else 0


def _code_spans(text: str, starts_in_code: bool) -> list[int]:
    """Flat sorted [start0, end0, start1, end1, ...] of Markdown code regions."""
    if "`" not in text:
        return [0, len(text)] if starts_in_code else []
    spans: list[int] = []
    pos = 0
    if starts_in_code:
        close = text.find("```")
        pos = len(text) if close < 0 else close + 3
        spans += [0, pos]
    for m in _CODE.finditer(text, pos):
        spans += [m.start(), m.end()]
    return spans


def _is_version(text: str, start: int, end: int, code: list[int]) -> bool:
    before = text[max(0, start - 24) : start]
    if _VERSION_BEFORE.search(before):
        return True
    in_code = bisect.bisect_right(code, start) % 2 == 1
    if not in_code:
        return False
    return not (_ADDRESS_BEFORE.search(before) or _ADDRESS_AFTER.match(text, end))
