"""Checksums and validity rules that turn a regex candidate into a finding.

A regex alone cannot tell a card number from any 16 digits, or an IP address from a version number; these
checks are where the precision of the pattern entities comes from.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter

# IBAN length per country (SWIFT IBAN registry): the length fixes where an IBAN ends in running text.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_ok(digits: str) -> bool:
    """Luhn, and a length the card's network uses: 13-19 digits from 2-6 (Visa, Mastercard, Amex,
    Discover, JCB, UnionPay...), 12-digit Maestro (50, 56-69) and 15-digit JCB (1800, 2131)."""
    n = len(digits)
    if 13 <= n <= 19 and digits[0] in "23456":
        network = True
    elif n == 12:
        network = digits[:2] == "50" or "56" <= digits[:2] <= "69"
    else:
        network = n == 15 and digits[:4] in ("1800", "2131")
    return network and luhn_ok(digits)


def iban_ok(iban: str) -> bool:
    """Known country, its exact length, and the ISO 7064 mod-97 check."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    rotated = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rotated)) % 97 == 1


# Numbers the SSA never issued although they pass the area/group/serial rules (advertising samples).
_RETIRED_SSNS = frozenset({"078051120", "219099999", "123456789"})


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """Area 000, 666 and 900-999, group 00 and serial 0000 were never issued."""
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return area + group + serial not in _RETIRED_SSNS


def ip_ok(candidate: str) -> bool:
    """A real, addressable IP: loopback and unspecified addresses identify nobody."""
    try:
        address = ipaddress.ip_address(candidate.split("%", 1)[0])
    except ValueError:
        return False
    return not (address.is_loopback or address.is_unspecified)


def entropy_bits(token: str) -> float:
    """Shannon entropy of the token's own character distribution, in bits per character."""
    n = len(token)
    return -sum(c / n * math.log2(c / n) for c in Counter(token).values())


# Runs that read as words: CamelCase parts and upper-case acronyms of three letters or more.
_WORDISH = re.compile(r"[A-Z]?[a-z]{3,}|[A-Z]{3,}")


def looks_random(token: str, min_bits: float) -> bool:
    """A secret-like token rather than an identifier.

    It needs digits and both letter cases (so no hex hashes, UUIDs or words), high entropy, classes
    (digit, lower, upper) that change often (random base62 changes at ~60% of neighbours, CamelCase at
    ~25%), and less than 70% of its characters in word-like runs (random base62: ~31% on average, an
    identifier such as ``ParseHttpRequest2024Handler``: over 80%).
    """
    classes = [0 if c.isdigit() else 1 if c.islower() else 2 if c.isupper() else 3 for c in token]
    if not (0 in classes and 1 in classes and 2 in classes):
        return False
    switches = sum(a != b for a, b in zip(classes, classes[1:], strict=False))
    if switches < 0.35 * (len(token) - 1):
        return False
    if sum(map(len, _WORDISH.findall(token))) >= 0.7 * len(token):
        return False
    return entropy_bits(token) >= min_bits
