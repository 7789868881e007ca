"""Running the gateway app under granian (Rust HTTP server, measured fastest for this pass-through work).

Shutdown on SIGTERM/SIGINT is graceful: granian closes the listening socket at once (new connections are
refused, so a load balancer moves on), lets every worker finish the requests it holds, streams included,
then runs the app's shutdown (request-log flush, adapter and health tasks stopped). A worker still busy
after ``shutdown.grace_s`` is killed, so a hung stream cannot hold a rollout forever.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from granian import Granian
from granian.constants import Interfaces

from gateway.config import SETTINGS_ENV, Settings, encode_settings
from gateway.host.process_guard import SUPERVISOR_ENV


def share_metrics_across_workers(settings: Settings) -> str | None:
    """With several workers, have each write its metrics to files that /metrics merges.

    Call before anything imports prometheus-client: it picks its storage at import, and granian's workers
    are forked from this process. Returns the directory to remove afterwards.
    """
    if settings.workers < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    metrics_dir = tempfile.mkdtemp(prefix="driftgate-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    return metrics_dir


def serve(settings: Settings, metrics_dir: str | None = None) -> None:
    """Serve until SIGINT/SIGTERM; every worker process builds its app from the same settings."""
    os.environ[SETTINGS_ENV] = encode_settings(settings).decode()
    os.environ[SUPERVISOR_ENV] = str(os.getpid())  # workers stop if this process is killed outright
    try:
        Granian(
            "gateway.app:create_app",
            factory=True,
            interface=Interfaces.ASGI,
            address=settings.host,
            port=settings.port,
            workers=settings.workers,
            respawn_failed_workers=True,
            workers_kill_timeout=settings.shutdown.grace_s,
            log_access=False,
        ).serve()
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
