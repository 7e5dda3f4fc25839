"""Three-way merge of one program file with git's own merge (``git merge-file``), no repository needed.

A stack (controller.search.stacking) replays one win's change onto another win's program: ``base`` is
the program the replayed change was made on, ``theirs`` the change's result, ``ours`` the program it is
replayed onto. git's merge decides what a person would trust it to decide (hunks that touch different
lines); everything else comes back as conflicts, marked as git marks them, for a person or an LLM.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from controller.errors import GitStoreError

_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class FileMerge:
    """The merged text; when ``conflicts`` > 0 it holds git's conflict markers around each one."""

    text: str
    conflicts: int

    @property
    def clean(self) -> bool:
        return self.conflicts == 0


def merge_file(base: str, ours: str, theirs: str, *, labels: tuple[str, str, str]) -> FileMerge:
    """Merge ``theirs``'s change (from ``base``) into ``ours``; ``labels`` name ours, base and theirs
    in the conflict markers. Raises :class:`GitStoreError` when git itself fails (not on a conflict)."""
    with tempfile.TemporaryDirectory(prefix="autogolf-merge-") as tmp:
        paths = []
        for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(tmp) / name
            path.write_text(text, encoding="utf-8")
            paths.append(str(path))
        label_args = [arg for label in labels for arg in ("-L", label)]
        try:
            done = subprocess.run(
                ["git", "merge-file", "-p", *label_args, *paths],
                capture_output=True,
                timeout=_TIMEOUT_SECONDS,
                check=False,
            )
        except FileNotFoundError as exc:
            raise GitStoreError("git is not installed", hint="install git (2.30 or newer)") from exc
        except subprocess.TimeoutExpired as exc:
            raise GitStoreError(f"git merge-file took over {_TIMEOUT_SECONDS} s") from exc
    # The exit status is the number of conflicts (capped at 127); a negative one is git's own error.
    if done.returncode < 0 or done.returncode > 127:
        raise GitStoreError(
            f"git merge-file failed (exit {done.returncode}): {done.stderr.decode(errors='replace').strip()}",
            hint="check the git installation",
        )
    return FileMerge(text=done.stdout.decode("utf-8"), conflicts=done.returncode)
