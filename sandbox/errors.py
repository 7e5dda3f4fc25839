"""Faults of the harness itself (not of a candidate): one family, each carrying what to do about it."""


class HarnessError(RuntimeError):
    """Base of every fault of autogolf's own machinery. ``hint`` says what the user can do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(f"{message}\n  hint: {hint}" if hint else message)
        self.hint = hint


class SandboxUnavailable(HarnessError):
    """The backend cannot run anything (Docker down, image missing, no permission)."""
