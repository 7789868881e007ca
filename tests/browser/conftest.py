"""The browser tests drive the same gateway as the console's HTTP tests (one per module)."""

from tests.unit.console.conftest import console  # noqa: F401 - a fixture, registered by this import
