"""Running the gateway app under granian (Rust HTTP server, measured fastest for this pass-through work)."""

from __future__ import annotations

import os
import shutil
import tempfile

from granian import Granian
from granian.constants import Interfaces

from gateway.config import SETTINGS_ENV, Settings, encode_settings


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; every worker process builds its app from the same settings."""
    os.environ[SETTINGS_ENV] = encode_settings(settings).decode()
    metrics_dir = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several workers: each writes its metrics to files here and /metrics merges them. Must be set
        # before any worker imports prometheus-client.
        metrics_dir = tempfile.mkdtemp(prefix="driftgate-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
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
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
