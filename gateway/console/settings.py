"""The console's settings (``console:`` in the config; ``DRIFTGATE_CONSOLE__<FIELD>`` overrides)."""

from __future__ import annotations

import msgspec


class ConsoleSettings(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = True
    # Session and CSRF cookies carry ``Secure``. Browsers (Chromium, Firefox) accept Secure cookies from
    # http://localhost and 127.0.0.1, so `driftgate up` works as is; turn it off only for plain http on
    # another address (or Safari on localhost), never on a network path without TLS.
    secure_cookie: bool = True
    # A login lasts this long without use (renewed on each page).
    session_max_age_s: int = 8 * 3600
    # How often the sampler reads the metrics; an hour of points is kept in memory.
    sample_every_s: float = 10.0
