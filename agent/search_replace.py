"""Applying one SEARCH/REPLACE block to a file's text.

Matching goes from strict to tolerant, and at every level the SEARCH text must match exactly once:

1. exact substring;
2. line by line, ignoring trailing whitespace (and blank lines at either end of the block);
3. line by line, also allowing a consistent leading-indentation offset (the model quoted a method
   body at the wrong depth); the REPLACE lines are re-indented by the same offset.

The ladder follows the edit-format lessons of Aider's SEARCH/REPLACE coder (models get whitespace
wrong far more often than content); the code here is our own. When nothing matches, the error quotes
the closest window of the file (difflib) with line numbers, so the repair turn can fix the quote.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from agent.errors import ProposalError

_CLOSEST_CANDIDATES = 25  # windows kept after the cheap quick_ratio filter, before the exact ratio


def apply_search_replace(text: str, search: str, replace: str, *, path: str, label: str) -> str:
    """``text`` with the one place matching ``search`` replaced by ``replace``.

    ``label`` names the block in error messages (e.g. "edit block 2"). Raises :class:`ProposalError`
    when the SEARCH text is empty, matches nowhere (quoting the closest lines) or matches more than
    once (giving the line numbers of each match).
    """
    if not search.strip():
        if not text.strip():
            return replace  # a new or empty file: the REPLACE text is its content
        raise ProposalError(
            f"{label} ({path}): the SEARCH text is empty. Quote the exact lines of {path} to replace; "
            "to add code, quote the lines next to where it goes and repeat them in REPLACE."
        )
    exact = _find_all(text, search)
    if len(exact) == 1:
        return text[: exact[0]] + replace + text[exact[0] + len(search) :]
    if len(exact) > 1:
        raise _ambiguous(label, path, [text.count("\n", 0, pos) + 1 for pos in exact])

    file_lines = text.split("\n")
    search_lines = _block_lines(search)
    replace_lines = _block_lines(replace)
    for matcher in (_match_ignoring_trailing_space, _match_with_indent_offset):
        matches = [
            (start, reindent)
            for start in range(len(file_lines) - len(search_lines) + 1)
            if (reindent := matcher(file_lines[start : start + len(search_lines)], search_lines)) is not None
        ]
        if len(matches) > 1:
            raise _ambiguous(label, path, [start + 1 for start, _ in matches])
        if len(matches) == 1:
            start, reindent = matches[0]
            new_lines = [reindent(line) for line in replace_lines]
            return "\n".join(file_lines[:start] + new_lines + file_lines[start + len(search_lines) :])
    raise ProposalError(
        f"{label} ({path}): the SEARCH text does not match any part of {path}, even ignoring "
        f"whitespace. SEARCH must copy existing lines exactly. The closest lines in {path} are:\n"
        f"{closest_lines(text, search)}"
    )


def closest_lines(text: str, search: str) -> str:
    """The window of ``text`` most similar to ``search`` (difflib ratio), quoted with line numbers."""
    file_lines = text.split("\n")
    search_lines = _block_lines(search)
    size = min(len(search_lines), len(file_lines))
    target = "\n".join(line.strip() for line in search_lines)
    windows = range(max(1, len(file_lines) - size + 1))
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(target)  # SequenceMatcher caches facts about seq2: the fixed side goes there

    def window_text(start: int) -> str:
        return "\n".join(line.strip() for line in file_lines[start : start + size])

    def score(start: int, measure: Callable[[], float]) -> float:
        matcher.set_seq1(window_text(start))
        return measure()

    shortlist = sorted(windows, key=lambda s: score(s, matcher.quick_ratio), reverse=True)
    best = max(shortlist[:_CLOSEST_CANDIDATES], key=lambda s: (score(s, matcher.ratio), -s))
    width = len(str(best + size))
    return "\n".join(
        f"{number:>{width}} | {line}"
        for number, line in enumerate(file_lines[best : best + size], start=best + 1)
    )


def _find_all(text: str, needle: str) -> list[int]:
    positions, start = [], text.find(needle)
    while start != -1:
        positions.append(start)
        start = text.find(needle, start + 1)
    return positions


def _ambiguous(label: str, path: str, line_numbers: list[int]) -> ProposalError:
    where = ", ".join(str(n) for n in line_numbers)
    return ProposalError(
        f"{label} ({path}): the SEARCH text matches {len(line_numbers)} places (starting at lines "
        f"{where}); it must match exactly one. Include more surrounding lines to make it unique."
    )


def _block_lines(block: str) -> list[str]:
    """The lines of a SEARCH or REPLACE text without the blank lines at either end."""
    lines = block.split("\n")
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _identity(line: str) -> str:
    return line


def _match_ignoring_trailing_space(window: list[str], search: list[str]) -> Callable[[str], str] | None:
    if all(a.rstrip() == b.rstrip() for a, b in zip(window, search, strict=True)):
        return _identity
    return None


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _match_with_indent_offset(window: list[str], search: list[str]) -> Callable[[str], str] | None:
    """Match when every non-blank line differs only by the same leading-indentation offset.

    Returns the function that re-indents a REPLACE line by that offset, or None.
    """
    pairs = [(a.rstrip(), b.rstrip()) for a, b in zip(window, search, strict=True)]
    if any(bool(a) != bool(b) for a, b in pairs):
        return None  # blank lines must line up with blank lines
    first = next(((a, b) for a, b in pairs if a), None)
    if first is None:
        return None
    file_indent, search_indent = _indent(first[0]), _indent(first[1])
    if file_indent.startswith(search_indent):
        added = file_indent[len(search_indent) :]
        if all(a == added + b for a, b in pairs if a):
            return lambda line: added + line if line.strip() else line
    elif search_indent.startswith(file_indent):
        removed = search_indent[len(file_indent) :]
        if all(b.startswith(removed) and a == b[len(removed) :] for a, b in pairs if a):
            return lambda line: line[len(removed) :] if line.startswith(removed) else line.lstrip()
    return None
