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
_GIT_TIMEOUT_SECONDS = 30


def apply_unified_diff(files: dict[str, str], diff: str, *, path: str, label: str) -> dict[str, str]:
    """``files`` with ``diff`` applied (a diff for the single file ``path``); other files unchanged.

    Raises :class:`ProposalError` quoting git's error when the diff does not apply, and
    :class:`AgentError` when git itself is missing or fails (a fault of the harness, not the reply).
    """
    diff = reposition_hunks(diff.replace("\r\n", "\n"), files.get(path, ""))
    strip = "-p1" if re.search(r"^--- (a/|/dev/null)", diff, re.MULTILINE) else "-p0"
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
        end = i + 1
        while end < len(lines) and not lines[end].startswith(("@@", "--- ")):
            end += 1
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
