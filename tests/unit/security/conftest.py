"""Fixtures for the security tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def url(db_url: str) -> str:
    """The state database of a security test (``db_url``: SQLite, then the real PostgreSQL server)."""
    return db_url
