"""The key that signs the console's CSRF tokens: one per state database, so that every worker and every replica
sharing that database signs alike, and a form one replica served is accepted by another."""

from __future__ import annotations

import secrets
import time

import sqlalchemy as sa

from monitor.database import ensure_schema, upsert_ignoring

SCHEMA_COMPONENT = "console_secrets"
SCHEMA_VERSION = 1
CSRF = "csrf"

metadata = sa.MetaData()
console_secrets = sa.Table(
    "console_secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
)


def csrf_secret(engine: sa.Engine) -> str:
    """The database's secret, made by whichever process asks first.

    Replicas start at once: each offers a secret with insert-if-absent, and all of them then read the one row
    that won (on PostgreSQL the losers' inserts wait for the winner's commit, then do nothing)."""
    ensure_schema(engine, SCHEMA_COMPONENT, SCHEMA_VERSION, [console_secrets])
    offer = {"name": CSRF, "value": secrets.token_hex(32), "created_at": time.time()}
    with engine.begin() as conn:
        conn.execute(upsert_ignoring(engine, console_secrets, "name").values(**offer))
        return conn.execute(sa.select(console_secrets.c.value).where(console_secrets.c.name == CSRF)).scalar_one()
