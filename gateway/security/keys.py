"""API keys: created once and shown once, stored only as a salted hash, checked on every request.

A key reads ``dg_<id>_<secret>``: the id finds the row, the secret is checked against its hash. The hash is
HMAC-SHA256 with a per-key salt, not a password hash (scrypt, argon2): the secret is 32 random bytes, so
there is nothing to brute-force, and a check must cost microseconds, not the tens of milliseconds a
password hash is designed to take.

One key may instead come from a file an operator wrote (``auth.admin_key_file``, see
:meth:`KeyStore.sync_file_key`): a ``dg_...`` token, or a secret of their own making with at least
:data:`MIN_SECRET_CHARS` characters, whose row id is derived from it (nothing else finds the row).
"""

from __future__ import annotations

import hashlib
import hmac
import re
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
# The name of the key that ``auth.admin_key_file`` holds, reserved for it: no other key can be mistaken for it.
FILE_KEY_NAME = "auth.admin_key_file"
# An operator-made secret's least length: 32 characters of even a hex alphabet are 128 bits.
MIN_SECRET_CHARS = 32
# What create() issues: token_hex(6) as the id, token_urlsafe(32) as the secret.
_ISSUED = re.compile(r"dg_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")

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


class FileKeyError(ValueError):
    """The admin key file's token cannot be stored as its key (its id is taken, or it was revoked)."""


class FileKeyChange(msgspec.Struct, frozen=True):
    """What :meth:`KeyStore.sync_file_key` did."""

    key: ApiKey | None  # the file's key as stored now; None without a file
    added: bool  # its token was new to the store
    revoked: list[str]  # ids of earlier file keys it revoked


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be a key, or None when it can: a token :meth:`KeyStore.create` issued, or an
    operator-made secret of at least :data:`MIN_SECRET_CHARS` printable ASCII characters without spaces."""
    if token.startswith("dg_"):
        if _ISSUED.fullmatch(token):
            return None
        return "starts with dg_ but is not a key driftgate issued (dg_<12 hex digits>_<43 characters>)"
    if not (token.isascii() and token.isprintable()) or any(char.isspace() for char in token):
        return "holds characters other than printable ASCII without spaces"
    if len(token) < MIN_SECRET_CHARS:
        return f"holds {len(token)} characters; a secret needs at least {MIN_SECRET_CHARS}"
    return None


def _digest(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode(), hashlib.sha256).digest()


def _secret_id(secret: str) -> str:
    """The row id of an operator-made secret. Someone who can read the table learns nothing more from it than
    from the salted digest beside it: both let them test guesses of the secret, neither faster."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def _parse(token: str) -> tuple[str, str]:
    if not token.startswith("dg_"):
        if token_problem(token) is not None:
            raise InvalidKey
        return _secret_id(token), token
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
        if name == FILE_KEY_NAME:
            raise Invalid("key", f"the name {FILE_KEY_NAME!r} is reserved for the key that file holds", field="name")
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

    def sync_file_key(self, token: str | None) -> FileKeyChange:
        """Make ``token`` (the admin key file's; None without one) the one usable file key: store it as an admin
        key named :data:`FILE_KEY_NAME` unless it is already, and revoke every other file key.

        Safe to run from several processes at once (replicas starting together): the one that loses the race
        to insert the same row reads again and finds it.
        """
        try:
            return self._sync_file_key(token)
        except sa.exc.IntegrityError:
            return self._sync_file_key(token)

    def _sync_file_key(self, token: str | None) -> FileKeyChange:
        now = time.time()
        key, added = None, False
        with self.engine.begin() as conn:
            if token is not None:
                key_id, secret = _parse(token)
                row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
                if row is None:
                    salt = secrets.token_bytes(16)
                    conn.execute(
                        sa.insert(api_keys).values(
                            id=key_id,
                            name=FILE_KEY_NAME,
                            salt=salt,
                            digest=_digest(salt, secret),
                            scope="admin",
                            created_at=now,
                        )
                    )
                    key, added = ApiKey(key_id, FILE_KEY_NAME, "admin", created_at=now), True
                elif row.name != FILE_KEY_NAME or not hmac.compare_digest(row.digest, _digest(row.salt, secret)):
                    raise FileKeyError(
                        f"its key id {key_id} is already taken by key {row.name!r}; the file needs a token of its own"
                    )
                elif row.revoked_at is not None:
                    raise FileKeyError(f"its key {key_id} was revoked; put a new token in the file")
                else:
                    key = _row_to_key(row)
            stale = sa.and_(api_keys.c.name == FILE_KEY_NAME, api_keys.c.revoked_at.is_(None))
            if key is not None:
                stale = sa.and_(stale, api_keys.c.id != key.id)
            revoked = list(conn.execute(sa.select(api_keys.c.id).where(stale)).scalars())
            if revoked:
                conn.execute(sa.update(api_keys).where(stale, api_keys.c.id.in_(revoked)).values(revoked_at=now))
        return FileKeyChange(key, added, revoked)
