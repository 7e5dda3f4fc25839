"""``ast.parse`` serialised across threads, for the whole process (installed by ``controller/__init__``).

CPython 3.11 keeps the recursion depth of its syntax-tree-to-objects conversion in state that threads
share, so two threads parsing at once can fail with "SystemError: AST constructor recursion depth
mismatch" (seen here in CI: a campaign's loop thread parsing a knob table while a planning thread
parsed too; CPython gh-106905 and pytest-dev/pytest#10763 report it in threaded programs). The controller is what runs agent and sandbox code in several threads: the agent's
program checks, the knob-table parser and the preflight all parse candidate programs. One lock around
``ast.parse`` costs nothing measurable next to a parse.
"""

from __future__ import annotations

import ast
import functools
import threading

# Re-entrant: a garbage-collector finalizer that runs during a parse (the reported trigger: a database
# connection's cleanup, pytest-dev/pytest#10763) may itself parse in the same thread.
_LOCK = threading.RLock()
_MARK = "__autogolf_serialised__"


def install() -> None:
    """Replace ``ast.parse`` (once) by a version that holds one process-wide lock while it parses."""
    if getattr(ast.parse, _MARK, False):
        return
    original = ast.parse

    @functools.wraps(original)
    def parse(*args, **kwargs):  # type: ignore[no-untyped-def]
        with _LOCK:
            return original(*args, **kwargs)

    setattr(parse, _MARK, True)
    ast.parse = parse  # type: ignore[assignment]
