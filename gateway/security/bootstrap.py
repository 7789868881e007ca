"""What ``serve`` and ``up`` settle about access before anything starts listening.

Run once per start in the parent process, before granian forks its workers (so they never race each other
over the key store), and before ``up`` starts vLLM: a bad token file or a refused bind stops the start with
one clear line and nothing half-started.

- The admin key file (``auth.admin_key_file``) is read and its token stored as the file's admin key; a new
  token replaces the old one, and a start without the setting revokes it.
- The metrics token file (``auth.metrics_token_file``) is read here only to check it; each worker reads it
  again for /metrics (:class:`gateway.security.auth.Authenticator`).
- The bind rule: a gateway listening on a non-loopback address needs a usable key (or the key file), unless
  ``auth.allow_open`` says it may run open. Loopback binds stay open by default.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import sqlalchemy as sa

from gateway.config import Settings, state_url
from gateway.security.audit import AuditLog
from gateway.security.keys import FILE_KEY_NAME, FileKeyChange, FileKeyError, KeyStore, token_problem

_log = logging.getLogger(__name__)
_ACTOR = f"config:{FILE_KEY_NAME}"


class StartRefused(Exception):
    """The gateway must not start; the message says why and how to fix it."""


def read_token_file(path: str, setting: str) -> str:
    """The one token in ``path`` (surrounding whitespace and the final newline dropped), or StartRefused
    naming ``setting``, the file and what is wrong with it."""
    where = f"{setting}: {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise StartRefused(f"{where} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise StartRefused(f"{where} is not UTF-8 text") from exc
    except OSError as exc:
        raise StartRefused(f"{where} cannot be read: {exc.strerror or exc}") from exc
    token = text.strip()
    if not token:
        raise StartRefused(f"{where} is empty; it must hold one token")
    if len(token.split()) > 1:
        raise StartRefused(f"{where} holds more than one word; it must hold one token")
    problem = token_problem(token)
    if problem is not None:
        raise StartRefused(f"{where} {problem}")
    return token


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the gateway reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve to anything
        return False


def open_bind_refusal(settings: Settings) -> str:
    return (
        f"refusing to listen on {settings.host}:{settings.port} without an API key: anyone who can reach that "
        "address could use every model and the admin routes. Either create an admin key with "
        "`driftgate keys create --name admin --scope admin` (same config), or set `auth.admin_key_file` "
        "(env DRIFTGATE_AUTH__ADMIN_KEY_FILE) to a file holding a token (a dg_... key, or a secret of 32 or "
        "more characters such as `openssl rand -hex 32` prints), or, to run open on purpose, set "
        "`auth.allow_open: true` (env DRIFTGATE_AUTH__ALLOW_OPEN=true). Binding 127.0.0.1 needs none of these."
    )


def settle_access(settings: Settings) -> None:
    """Check the token files, store the admin key file's token, and apply the bind rule; StartRefused if the
    gateway must not start."""
    auth = settings.auth
    admin_token = read_token_file(auth.admin_key_file, "auth.admin_key_file") if auth.admin_key_file else None
    if auth.metrics_token_file:
        read_token_file(auth.metrics_token_file, "auth.metrics_token_file")
    url = state_url(settings)
    try:
        store = KeyStore(url)
        try:
            change = store.sync_file_key(admin_token)
            keyless = not store.any_usable()
        finally:
            store.close()
    except FileKeyError as exc:
        raise StartRefused(f"auth.admin_key_file: {auth.admin_key_file}: {exc}") from exc
    except sa.exc.SQLAlchemyError as exc:
        raise StartRefused(f"the state database did not answer: {exc}") from exc
    _record(url, change, auth.admin_key_file)
    if keyless and not is_loopback(settings.host):
        if not auth.allow_open:
            raise StartRefused(open_bind_refusal(settings))
        _log.warning(
            "auth.allow_open: listening on %s with no API key; anyone who can reach it may use every route",
            settings.host,
        )


def _record(url: str, change: FileKeyChange, path: str | None) -> None:
    """Log and audit what the start did to the file's key, like any other key change."""
    if not change.added and not change.revoked:
        return
    audit = AuditLog(url)
    try:
        if change.added and change.key is not None:
            _log.info("admin key %s stored from %s", change.key.id, path)
            audit.append(_ACTOR, "key.created", f"key:{change.key.id}", {"scope": "admin", "name": FILE_KEY_NAME})
        for key_id in change.revoked:
            _log.info("admin key %s from %s revoked: %s", key_id, FILE_KEY_NAME, "replaced" if path else "unset")
            audit.append(_ACTOR, "key.revoked", f"key:{key_id}", {})
    finally:
        audit.close()
