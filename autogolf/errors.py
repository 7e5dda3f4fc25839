"""The one family of autogolf's own faults: every error the tools raise for the user derives from
:class:`GolfError`, so the command line reports any of them the same way (a message and what to do
about it, no traceback) and anything else stays a bug with its traceback.

A bad candidate is never one of these: it is a run result with a status (``sandbox.spec.RunResult``);
a reply an LLM got wrong is ``agent.errors.ProposalError``, turned into a repair turn.
"""

from __future__ import annotations


class GolfError(Exception):
    """A fault of autogolf's machinery or its inputs, never of a candidate.

    ``message`` says what went wrong, naming the input at fault; ``hint`` (may be empty) says what
    the user can do about it. ``str()`` holds both, so a log line or ``pytest.raises(match=...)``
    sees the whole story.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(f"{message}\n  hint: {hint}" if hint else message)
        self.message = message
        self.hint = hint


class DataError(GolfError, ValueError):
    """Bad data input (a file, the corpus, a download, a shard); the message names the input and the fix.

    Here rather than in ``datatools`` because the harness's shard reader (``sandbox.shards``) raises
    it too, and the sandbox may not import the data tools.
    """
