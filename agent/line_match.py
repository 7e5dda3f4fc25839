"""Line-level matching of quoted lines against a file, and the file's indentation style.

The tolerant levels of the SEARCH/REPLACE ladder (see :mod:`agent.search_replace`): a window of the
file matches the quoted lines ignoring trailing whitespace, or else when every line differs only by
the same leading-indentation offset. A match carries the function that re-indents REPLACE lines to
the file's depth.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

Reindent = Callable[[str], str]
_DEFAULT_INDENT_UNIT = "    "  # PEP 8, and what a file without any indented line will get


@dataclass(frozen=True)
class LineMatch:
    start: int  # index of the first matched file line
    end: int  # index just past the last one
    reindent: Reindent  # applied to each REPLACE line


def locate(file_lines: list[str], quoted: list[str], *, start: int = 0) -> list[LineMatch]:
    """Every window of ``file_lines`` at or after ``start`` matching ``quoted``, at the strictest level
    that matches anywhere (trailing whitespace ignored, then a consistent indentation offset)."""
    if not quoted:
        return []
    size = len(quoted)
    for matcher in (_ignoring_trailing_space, _with_indent_offset):
        matches = [
            LineMatch(begin, begin + size, reindent)
            for begin in range(start, len(file_lines) - size + 1)
            if (reindent := matcher(file_lines[begin : begin + size], quoted)) is not None
        ]
        if matches:
            return matches
    return []


def block_lines(block: str) -> list[str]:
    """The lines of a SEARCH or REPLACE text without the blank lines at either end."""
    lines = block.split("\n")
    return trim_blank_edges(lines)


def trim_blank_edges(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def space_indent_unit(text: str) -> str | None:
    """The indent unit of a file indented with spaces only, or None if any line indents with a tab.

    The unit is the most common step by which indentation grows from one non-blank line to the next
    (4 spaces in PEP 8 code; continuation lines aligned under a bracket are rarer steps).
    """
    steps: Counter[int] = Counter()
    previous = 0
    for line in text.split("\n"):
        if not line.strip():
            continue
        indent = indent_of(line)
        if "\t" in indent:
            return None
        if len(indent) > previous:
            steps[len(indent) - previous] += 1
        previous = len(indent)
    return " " * steps.most_common(1)[0][0] if steps else _DEFAULT_INDENT_UNIT


def expand_leading_tabs(block: str, unit: str) -> str:
    """``block`` with the tabs in each line's indentation expanded to tab stops every ``len(unit)``
    columns: one tab is one indent level of a file whose unit is ``unit``."""
    lines = block.split("\n")
    for number, line in enumerate(lines):
        indent = indent_of(line)
        if "\t" in indent:
            lines[number] = indent.expandtabs(len(unit)) + line[len(indent) :]
    return "\n".join(lines)


def has_leading_tab(block: str) -> bool:
    return any("\t" in indent_of(line) for line in block.split("\n"))


def _identity(line: str) -> str:
    return line


def _ignoring_trailing_space(window: list[str], quoted: list[str]) -> Reindent | None:
    if all(a.rstrip() == b.rstrip() for a, b in zip(window, quoted, strict=True)):
        return _identity
    return None


def _with_indent_offset(window: list[str], quoted: list[str]) -> Reindent | None:
    """Match when every non-blank line differs only by the same leading-indentation offset.

    Returns the function that re-indents a REPLACE line by that offset, or None.
    """
    pairs = [(a.rstrip(), b.rstrip()) for a, b in zip(window, quoted, strict=True)]
    if any(bool(a) != bool(b) for a, b in pairs):
        return None  # blank lines must line up with blank lines
    first = next(((a, b) for a, b in pairs if a), None)
    if first is None:
        return None
    file_indent, quoted_indent = indent_of(first[0]), indent_of(first[1])
    if file_indent.startswith(quoted_indent):
        added = file_indent[len(quoted_indent) :]
        if all(a == added + b for a, b in pairs if a):
            return lambda line: added + line if line.strip() else line
    elif quoted_indent.startswith(file_indent):
        removed = quoted_indent[len(file_indent) :]
        if all(b.startswith(removed) and a == b[len(removed) :] for a, b in pairs if a):
            return lambda line: line[len(removed) :] if line.startswith(removed) else line.lstrip()
    return None
