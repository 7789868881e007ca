"""Processes that end with the one that started them, however it ends (Linux's ``PR_SET_PDEATHSIG``).

Why by hand: no library wraps this prctl. Without it, a gateway killed outright (SIGKILL, the OOM killer)
leaves vLLM and granian's worker processes running, holding their ports and memory; a graceful stop
already ends them in order.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

# Set by the process that starts granian; its workers follow it.
SUPERVISOR_ENV = "DRIFTGATE_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1
# Looked up once here: after a fork in a threaded process the child must not load libraries.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def available() -> bool:
    return _prctl is not None


def terminate_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its parent dies; safe as a ``preexec_fn``."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def follow_supervisor() -> None:
    """In a granian worker: stop (gracefully, on SIGTERM) when the process that started the server dies."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor is None or int(supervisor) == os.getpid() or _prctl is None:
        return
    terminate_with_parent()
    if os.getppid() != int(supervisor):  # it died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)
