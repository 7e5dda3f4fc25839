"""Faults of the controller's own machinery, in autogolf's one error family
(:class:`autogolf.errors.GolfError`): each carries a ``message`` and a ``hint`` saying what to do about
it, and the command line prints both without a traceback.

A bad candidate is never one of these: it is a result with a status (see ``sandbox.spec.RunResult``).
"""

from __future__ import annotations

from autogolf.errors import GolfError


class ControllerError(GolfError, RuntimeError):
    """Base of the controller's faults."""


class ConfigError(ControllerError, ValueError):
    """A campaign file cannot be used. The message lists every problem as ``key.path: message (fix: ...)``."""

    def __init__(self, message: str, problems: tuple[str, ...] = (), hint: str = "") -> None:
        super().__init__(message, hint)
        self.problems = problems


class GitStoreError(ControllerError):
    """git refused an operation on the campaign repository; the message holds the command and its stderr."""


class StudyError(ControllerError):
    """The Optuna study cannot be opened or updated (storage unreachable, trial in the wrong state)."""
