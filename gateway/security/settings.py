"""Authentication settings, apart from the code that enforces them: `gateway.config` imports this module,
and must not pull in Prometheus metrics before `serve` has set up multiprocess collection."""

from __future__ import annotations

import msgspec


class AuthSettings(msgspec.Struct, forbid_unknown_fields=True):
    # How long a checked key is trusted before the store is asked again (revocation delay).
    cache_ttl_s: float = 5.0
    # A file holding one admin token (a `dg_...` key or an operator-made secret of 32+ printable characters),
    # stored at each start as the key named `auth.admin_key_file`: a new token in the file replaces the old
    # one, and removing this setting revokes it. How a deployment gets its first admin key.
    admin_key_file: str | None = None
    # Let a gateway bound to a non-loopback address start with no API key at all (anyone who reaches it may
    # use every route). Without it such a gateway refuses to start until a key or `admin_key_file` exists.
    allow_open: bool = False
    # A file holding the token Prometheus sends (`Authorization: Bearer ...`) to scrape /metrics; an admin
    # key is accepted too. None: /metrics answers anyone who can reach the gateway.
    metrics_token_file: str | None = None
