"""Running the gateway app under granian (Rust HTTP server, measured fastest for this pass-through work)."""

from __future__ import annotations

import os

from granian import Granian
from granian.constants import Interfaces

from gateway.app import SETTINGS_ENV
from gateway.config import Settings, encode_settings


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; every worker process builds its app from the same settings."""
    os.environ[SETTINGS_ENV] = encode_settings(settings).decode()
    Granian(
        "gateway.app:create_app",
        factory=True,
        interface=Interfaces.ASGI,
        address=settings.host,
        port=settings.port,
        workers=settings.workers,
        respawn_failed_workers=True,
        log_access=False,
    ).serve()
