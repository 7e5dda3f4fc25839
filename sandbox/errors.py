"""Faults of the harness itself (not of a candidate), in autogolf's one error family."""

from autogolf.errors import GolfError


class HarnessError(GolfError, RuntimeError):
    """A fault of the sandbox's machinery (backend, data, limits). ``hint`` says what the user can do."""


class SandboxUnavailable(HarnessError):
    """The backend cannot run anything (Docker down, image missing, no permission)."""
