"""Pattern entities: each found where it is, and the near misses that must stay untouched."""

from __future__ import annotations

import pytest

from guards.config import PiiSettings
from guards.pii import PiiGuard

GUARD = PiiGuard(PiiSettings())


def found(text: str) -> list[tuple[str, str]]:
    return [(f.entity, text[f.start : f.end]) for f in GUARD.inspect(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to john.doe+news@mail.example.co.uk today", ("EMAIL", "john.doe+news@mail.example.co.uk")),
        ("call +1 415-555-2671 please", ("PHONE", "+1 415-555-2671")),
        ("call (212) 555-0199 after six", ("PHONE", "(212) 555-0199")),
        ("ring +44 20 7946 0958 in London", ("PHONE", "+44 20 7946 0958")),
        ("visa 4111 1111 1111 1111 exp 12/29", ("CREDIT_CARD", "4111 1111 1111 1111")),
        ("amex 3782-822463-10005 ok", ("CREDIT_CARD", "3782-822463-10005")),
        ("mc 5555555555554444.", ("CREDIT_CARD", "5555555555554444")),
        ("IBAN DE89 3704 0044 0532 0130 00 AND more", ("IBAN", "DE89 3704 0044 0532 0130 00")),
        ("pay GB82WEST12345698765432 now", ("IBAN", "GB82WEST12345698765432")),
        ("ssn 536-90-4399 on file", ("US_SSN", "536-90-4399")),
        ("ssn 536 90 4399 on file", ("US_SSN", "536 90 4399")),
        ("my ip is 203.0.113.7.", ("IP_ADDRESS", "203.0.113.7")),
        ("v6 2001:db8:85a3::8a2e:370:7334 here", ("IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334")),
        ("ssh to `host 10.0.0.5` first", ("IP_ADDRESS", "10.0.0.5")),
        ("```\ncurl http://192.168.1.20:8080/x\n```", ("IP_ADDRESS", "192.168.1.20")),
        ("key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", ("SECRET", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z")),
        ("aws AKIAIOSFODNN7EXAMPLE", ("SECRET", "AKIAIOSFODNN7EXAMPLE")),
        ("gh ghp_" + "a1B2c3D4e5" * 4, ("SECRET", "ghp_" + "a1B2c3D4e5" * 4)),
        ("slack xoxb-123456789012-abcdefghij", ("SECRET", "xoxb-123456789012-abcdefghij")),
        ("google AIzaSyA-1234567890abcdefghijklmnopqrstu", ("SECRET", "AIzaSyA-1234567890abcdefghijklmnopqrstu")),
        ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", ("SECRET", "sk_live_4eC39HqLyjWDarjtT1zdp7dc")),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            ("SECRET", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
        ),
        ("token=q8Zr2LmX0pV7tKc4Wn9Bd3Hs6Yf1Ge5J", ("SECRET", "q8Zr2LmX0pV7tKc4Wn9Bd3Hs6Yf1Ge5J")),
    ],
)
def test_finds_entity(text: str, expected: tuple[str, str]) -> None:
    assert found(text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",
        "order 1234567890123456 is not a card",
        "IBAN DE89 3704 0044 0532 0130 01 has a wrong checksum",
        "XX89370400440532013000 is no country",
        "ssn 000-12-3456, 666-12-3456, 912-34-5678, 123-00-4567, 123-45-0000",
        "sample 078-05-1120",
        "release version 1.2.3.4 today",
        "pip install pkg==1.2.3.4 and v10.0.0.1",
        "in code `1.2.3.4` stays",
        "```\nimport lib  # 4.3.2.1\n```",
        "dotted 1.2.3.4.5 run",
        "bad ip 256.1.1.1 and 127.0.0.1 and 0.0.0.0",
        "time 12:30:45 and std::vector",
        "the sequence 555-0100, then 123-456-7890 and +1 555 123 4567",
        "Is the number 1000000 prime? We reach 1000000 users; call me on 2024-05-01",
        "uuid 123e4567-e89b-12d3-a456-426614174000 and sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
        "identifier ThisIsAVeryLongClassName2024Handler and XMLHttpRequestFactory2Builder",
        "contact john at example dot com",
        "date 2024-01-15 and 15.01.2024",
    ],
)
def test_near_misses_stay(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "number"),
    [
        # Exchanges starting with 0 or 1, unassigned area codes, local and foreign shapes: a contact context
        # makes any of them a phone number.
        ("phone 415-055-1234 anytime", "415-055-1234"),
        ("call me at 212-155-0134.", "212-155-0134"),
        ("call 123-456-7890 after lunch", "123-456-7890"),
        ("my cell is 0161 496 0000", "0161 496 0000"),
        ("text me on +1 (415) 055 1234 tonight", "+1 (415) 055 1234"),
        ("ring me 07700 900123", "07700 900123"),
        ("Tel.: 030 1234567", "030 1234567"),
        ("contact us 0800 123 4567", "0800 123 4567"),
    ],
)
def test_any_number_in_a_contact_context_is_a_phone(text: str, number: str) -> None:
    assert found(text) == [("PHONE", number)]


def test_checksummed_entity_wins_an_overlap() -> None:
    # The card's digits could also read as a phone number; the card keeps the span.
    assert found("pay with 4012888888881881 now") == [("CREDIT_CARD", "4012888888881881")]


def test_unconfigured_entity_is_found_but_allowed() -> None:
    guard = PiiGuard(PiiSettings(actions={"EMAIL": "mask"}))
    findings = guard.inspect("a@b.co from 10.1.2.3")
    assert [(f.entity, f.action) for f in findings] == [("EMAIL", "mask"), ("IP_ADDRESS", "allow")]
