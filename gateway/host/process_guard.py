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
# A worker switches from SIGKILL to SIGTERM this long after its startup ends: by then granian serves.
SERVING_AFTER_S = 1.0
_PR_SET_PDEATHSIG = 1
# Looked up once here: after a fork in a threaded process the child must not load libraries.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def available() -> bool:
    return _prctl is not None


def terminate_with_parent(sig: signal.Signals = signal.SIGTERM) -> None:
    """Have the kernel send this process ``sig`` when its parent dies; safe as a ``preexec_fn``."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, sig)


def follow_supervisor(sig: signal.Signals) -> None:
    """In a granian worker: end with the process that started the server.

    A worker asks for SIGKILL while it starts (granian's SIGTERM handler can block forever in a worker that has
    not finished starting, and there is nothing to drain yet), then for SIGTERM once it serves
    (:data:`SERVING_AFTER_S` after its startup), so that requests in flight end gracefully.
    """
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor is None or int(supervisor) == os.getpid() or _prctl is None:
        return
    terminate_with_parent(sig)
    if os.getppid() != int(supervisor):  # it died before the request was in place
        os.kill(os.getpid(), sig)
