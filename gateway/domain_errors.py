"""What domain code raises when it refuses: plain exceptions that say what went wrong, never how to answer it.

The adapter registry, service and reconciler, the loop controller and the key store raise these; they know
nothing of HTTP. The edge turns each into an error of the catalog in one place
(:func:`gateway.errors.from_domain`, registered as the app's handler for :class:`DomainError`). ``subject``
names the thing concerned, so one class per kind of refusal is enough.
"""

from __future__ import annotations

from typing import Literal

Subject = Literal["base_model", "adapter", "dataset", "backend", "loop_run", "key", "feature"]


class DomainError(Exception):
    """A refusal by the domain: ``message`` is written for the person who asked, ``field`` names the input
    that caused it (if one did)."""

    def __init__(self, subject: Subject, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.subject = subject
        self.message = message
        self.field = field


class NotFound(DomainError):
    """No such thing (or none the caller may see)."""


class Conflict(DomainError):
    """The thing exists, but its current state forbids the change."""


class Invalid(DomainError, ValueError):
    """The input cannot work: an adapter directory vLLM would refuse, a base model nobody serves, a key limit
    below one. A ``ValueError`` too, which is what callers outside the gateway (the CLI) expect of bad input."""


class Unavailable(DomainError):
    """What the operation needs is missing right now (no healthy backend, no free adapter slot); retry later."""


class BackendFailed(DomainError):
    """A backend refused or broke an operation it was asked to do (loading an adapter)."""
