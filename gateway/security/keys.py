"""API keys: created once and shown once, stored only as a salted hash, checked on every request.

A key reads ``dg_<id>_<secret>``: the id finds the row, the secret is checked against its hash. The hash is
HMAC-SHA256 with a per-key salt, not a password hash (scrypt, argon2): the secret is 32 random bytes, so
there is nothing to brute-force, and a check must cost microseconds, not the tens of milliseconds a
password hash is designed to take.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import zlib
from typing import Literal

import msgspec
import sqlalchemy as sa

from gateway.domain_errors import Invalid
from monitor.database import create_engine, ensure_schema, schema_versions

Scope = Literal["inference", "admin"]
SCHEMA_COMPONENT = "api_keys"
# 2: max_concurrent (added in place to a version-1 table, see _migrate).
SCHEMA_VERSION = 2

metadata = sa.MetaData()
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("salt", sa.LargeBinary, nullable=False),
    sa.Column("digest", sa.LargeBinary, nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("adapters", sa.Text),  # JSON list; NULL = every model
    sa.Column("rpm", sa.Integer),
    sa.Column("tpm", sa.Integer),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double),
    sa.Column("revoked_at", sa.Double),
    sa.Column("max_concurrent", sa.Integer),
)


class ApiKey(msgspec.Struct, frozen=True):
    """A key as the gateway knows it: everything but the secret."""

    id: str
    name: str
    scope: Scope
    adapters: tuple[str, ...] | None = None  # models/aliases this key may use; None = all
    rpm: int | None = None
    tpm: int | None = None
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    max_concurrent: int | None = None  # requests in flight at once

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def may_use(self, model: str) -> bool:
        """Tenant isolation: a key limited to some adapters sees only those (and their pinned versions)."""
        return self.adapters is None or model.split("@", 1)[0] in self.adapters


class InvalidKey(Exception):
    """Unknown, malformed, revoked or expired: the caller answers 401 without saying which."""


def _digest(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode(), hashlib.sha256).digest()


def _parse(token: str) -> tuple[str, str]:
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != "dg" or not key_id or not secret:
        raise InvalidKey
    return key_id, secret


_adapters = msgspec.json.Decoder(tuple[str, ...])


def _row_to_key(row: sa.Row) -> ApiKey:
    adapters = _adapters.decode(row.adapters) if row.adapters else None
    return ApiKey(
        row.id, row.name, row.scope, adapters, row.rpm, row.tpm, row.created_at, row.expires_at, row.revoked_at,
        row.max_concurrent,
    )  # fmt: skip


def _migrate(engine: sa.Engine) -> None:
    """Bring a version-1 keys table to version 2 in place: one nullable column, so every existing key keeps working."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # The same lock ensure_schema takes: replicas starting together migrate once.
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(zlib.crc32(SCHEMA_COMPONENT.encode()))))
        inspector = sa.inspect(conn)
        if not inspector.has_table(schema_versions.name) or not inspector.has_table(api_keys.name):
            return
        found = conn.execute(
            sa.select(schema_versions.c.version).where(schema_versions.c.component == SCHEMA_COMPONENT)
        ).scalar_one_or_none()
        if found != 1:
            return
        if "max_concurrent" not in {column["name"] for column in inspector.get_columns(api_keys.name)}:
            conn.execute(sa.text("ALTER TABLE api_keys ADD COLUMN max_concurrent INTEGER"))
        conn.execute(
            sa.update(schema_versions).where(schema_versions.c.component == SCHEMA_COMPONENT).values(version=2)
        )


class KeyStore:
    """Keys in the gateway's database; every call is synchronous (run it off the event loop)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        _migrate(self.engine)
        ensure_schema(self.engine, SCHEMA_COMPONENT, SCHEMA_VERSION, [api_keys])

    def close(self) -> None:
        self.engine.dispose()

    def create(
        self,
        name: str,
        scope: Scope,
        *,
        adapters: list[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        expires_in_s: float | None = None,
        max_concurrent: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its token. The token is returned once and never stored."""
        if scope not in ("inference", "admin"):
            raise Invalid("key", f"scope must be inference or admin, not {scope!r}", field="scope")
        for limit in (rpm, tpm, max_concurrent):
            if limit is not None and limit < 1:
                raise Invalid("key", "rpm, tpm and max_concurrent must be at least 1")
        key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_bytes(16)
        now = time.time()
        key = ApiKey(
            key_id, name, scope, tuple(adapters) if adapters else None, rpm, tpm, now,
            None if expires_in_s is None else now + expires_in_s, None, max_concurrent,
        )  # fmt: skip
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(api_keys).values(
                    id=key.id,
                    name=name,
                    salt=salt,
                    digest=_digest(salt, secret),
                    scope=scope,
                    adapters=msgspec.json.encode(key.adapters).decode() if key.adapters else None,
                    rpm=rpm,
                    tpm=tpm,
                    max_concurrent=max_concurrent,
                    created_at=now,
                    expires_at=key.expires_at,
                )  # fmt: skip
            )
        return key, f"dg_{key_id}_{secret}"

    def verify(self, token: str, now: float | None = None) -> ApiKey:
        key_id, secret = _parse(token)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
        if row is None or not hmac.compare_digest(row.digest, _digest(row.salt, secret)):
            raise InvalidKey
        key = _row_to_key(row)
        if not key.usable(time.time() if now is None else now):
            raise InvalidKey
        return key

    def revoke(self, key_id: str) -> ApiKey | None:
        """Stop ``key_id`` from working; the key as revoked, or None if no active key has that id."""
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
            if done.rowcount != 1:
                return None
            return _row_to_key(conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).one())

    def list(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            return [_row_to_key(row) for row in conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at))]

    def any_usable(self) -> bool:
        now = time.time()
        return any(key.usable(now) for key in self.list())
