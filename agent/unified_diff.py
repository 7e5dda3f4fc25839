"""Applying a unified diff with ``git apply --recount`` in a scratch folder.

Models get hunk headers wrong far more often than hunk text: wrong counts, wrong positions, bare
``@@`` separators without numbers. So before git sees the diff, each hunk's position is set to where
its old-side lines (context and ``-`` lines) actually occur in the file (the occurrence nearest the
stated position), ``--recount`` recomputes the counts, and ``--unidiff-zero`` stops git insisting
that a hunk without leading/trailing context sits at the start/end of the file. A hunk whose old
lines are nowhere in the file is left to git, whose complaint goes into the repair message verbatim.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from agent.errors import AgentError, ProposalError

_HUNK_START = re.compile(r"^@@\s*(?:-(\d+))?")  # "@@ -12,3 +12,4 @@", and bare "@@" / "@@ def f():"
_HUNK_COUNTS = re.compile(r"^@@\s*-\d+(?:,(\d+))?\s+\+\d+(?:,(\d+))?\s*@@")  # an omitted count is 1
_BODY_PREFIXES = (" ", "-", "+", "\\")
_GIT_TIMEOUT_SECONDS = 30


def apply_unified_diff(files: dict[str, str], diff: str, *, path: str, label: str) -> dict[str, str]:
    """``files`` with ``diff`` applied (a diff for the single file ``path``); other files unchanged.

    Raises :class:`ProposalError` quoting git's error when the diff does not apply, and
    :class:`AgentError` when git itself is missing or fails (a fault of the harness, not the reply).
    """
    diff = reposition_hunks(diff.replace("\r\n", "\n"), files.get(path, ""))
    strip = _strip_option(diff)
    with tempfile.TemporaryDirectory(prefix="autogolf-diff-") as scratch:
        root = Path(scratch)
        for name, text in files.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        (root / "edit.patch").write_text(diff, encoding="utf-8")
        try:
            # A repository of its own, so a git repository around the temp folder is never touched.
            subprocess.run(
                ["git", "init", "-q"], cwd=root, check=True, capture_output=True, timeout=_GIT_TIMEOUT_SECONDS
            )
            result = subprocess.run(
                ["git", "apply", "--recount", "--unidiff-zero", "--whitespace=nowarn", strip, "edit.patch"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=_GIT_TIMEOUT_SECONDS,
            )
        except FileNotFoundError as exc:
            raise AgentError(
                "unified diffs need the `git` executable on PATH", hint="install git, or put it on PATH"
            ) from exc
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            # git itself failed, not the diff: a fault of this machine, never the model's to repair.
            said = exc.stderr.decode(errors="replace").strip() if isinstance(exc.stderr, bytes) else ""
            raise AgentError(
                f"git failed in a scratch folder while applying a diff: {exc}"
                + (f"\n{said}" if said else ""),
                hint="check that `git init` and `git apply` work in the system's temporary directory",
            ) from exc
        if result.returncode != 0:
            complaint = (result.stderr or result.stdout).strip().replace("edit.patch:", "diff line ")
            raise ProposalError(
                f"{label} ({path}): the unified diff does not apply to {path}. git apply said:\n"
                f"{complaint}\nMake the context and '-' lines copy the current file exactly, or use "
                "SEARCH/REPLACE blocks instead."
            )
        updated = dict(files)
        target = root / path
        if target.exists():
            updated[path] = target.read_text(encoding="utf-8")
        else:
            updated.pop(path, None)  # the diff deleted the file
        return updated


def reposition_hunks(diff: str, text: str) -> str:
    """``diff`` with every hunk header pointing at where its old-side lines really are in ``text``."""
    file_lines = [line.rstrip() for line in text.split("\n")]
    lines = diff.rstrip("\n").split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        header = _HUNK_START.match(lines[i])
        if header is None:
            out.append(lines[i])
            i += 1
            continue
        end = hunk_end(lines, i)
        body = lines[i + 1 : end]
        # A bare empty line inside a hunk is a blank context line (git reads it the same way).
        old = [line[1:].rstrip() if line else "" for line in body if line[:1] in (" ", "-", "")]
        new_count = sum(1 for line in body if line[:1] in (" ", "+", ""))
        stated = int(header.group(1)) if header.group(1) else 1
        found = [
            start + 1
            for start in range(len(file_lines) - len(old) + 1)
            if old and file_lines[start : start + len(old)] == old
        ]
        if found:
            start = min(found, key=lambda line: abs(line - stated))
            out.append(f"@@ -{start},{len(old)} +{start},{new_count} @@")
        elif header.group(1) is None:
            out.append(f"@@ -{stated},{len(old)} +{stated},{new_count} @@")  # let git report the mismatch
        else:
            out.append(lines[i])
        out.extend(body)
        i = end
    return "\n".join(out) + "\n"


def hunk_end(lines: list[str], header: int) -> int:
    """The index just past the body of the hunk whose ``@@`` line is ``lines[header]``.

    Inside the counts of an ``@@ -a,b +c,d @@`` header every line is body, so a removed ``-- x``
    (``--- x`` in the diff) or an added ``++ y`` is never taken for a file header; the one exception
    is a whole ``---``/``+++``/``@@`` header, which ends a hunk whose counts were overstated. Past the
    counts (models understate them; a bare ``@@`` has none) the body runs on until the next ``@@``, a
    ``---``/``+++`` header pair, or a line no hunk can hold (prose after the diff).
    """
    counts = _HUNK_COUNTS.match(lines[header])
    old_left = int(counts.group(1) or 1) if counts else 0
    new_left = int(counts.group(2) or 1) if counts else 0
    end = header + 1
    while end < len(lines):
        line = lines[end]
        if line and not line.startswith(_BODY_PREFIXES):
            break  # "@@" of the next hunk, or prose
        if _is_file_header(lines, end, with_hunk=old_left > 0 or new_left > 0):
            break
        if line[:1] in (" ", "-", ""):
            old_left = max(old_left - 1, 0)
        if line[:1] in (" ", "+", ""):
            new_left = max(new_left - 1, 0)
        end += 1
    return end


def _is_file_header(lines: list[str], at: int, *, with_hunk: bool) -> bool:
    """Whether ``lines[at]`` opens a ``--- old`` / ``+++ new`` header (then ``@@`` if ``with_hunk``)."""
    if not (lines[at].startswith("--- ") and at + 1 < len(lines) and lines[at + 1].startswith("+++ ")):
        return False
    return not with_hunk or (at + 2 < len(lines) and lines[at + 2].startswith("@@"))


def _strip_option(diff: str) -> str:
    """``-p1`` for ``a/`` / ``b/`` prefixed names, else ``-p0``, read from the file header only (a
    removed line ``-- a/b`` inside a hunk reads ``--- a/b`` too)."""
    lines = diff.split("\n")
    for at, line in enumerate(lines):
        if line.startswith("@@"):
            break
        if _is_file_header(lines, at, with_hunk=False):
            old, new = lines[at][4:].strip(), lines[at + 1][4:].strip()
            prefixed = old.startswith("a/") or (old == "/dev/null" and new.startswith("b/"))
            return "-p1" if prefixed else "-p0"
    return "-p0"
