"""Authentication settings, apart from the code that enforces them: `gateway.config` imports this module,
and must not pull in Prometheus metrics before `serve` has set up multiprocess collection."""

from __future__ import annotations

import msgspec


class AuthConfig(msgspec.Struct, forbid_unknown_fields=True):
    # How long a checked key is trusted before the store is asked again (revocation delay).
    cache_ttl_s: float = 5.0
