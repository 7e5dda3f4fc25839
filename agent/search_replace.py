"""Applying one SEARCH/REPLACE block to a file's text.

First the block is put in the file's indentation style: tabs in the indentation of a block for a
file indented with spaces only are expanded to the file's indent unit (one tab, one level), in SEARCH
and REPLACE alike, so new lines never mix tabs into a space-indented file.

Matching goes from strict to tolerant, and at every level the SEARCH text must match exactly once:

1. exact substring;
2. line by line, ignoring trailing whitespace (and blank lines at either end of the block);
3. line by line, also allowing a consistent leading-indentation offset (the model quoted a method
   body at the wrong depth); the REPLACE lines are re-indented by the same offset.

When no level matches, two readings of a block that quotes the file loosely:

4. ``...`` elision (:mod:`agent.elision`): the pieces of SEARCH between ``...`` lines are found in
   order, the first exactly once, each later one at its first match after the piece before it; the
   file's lines between them are kept as they are, and each REPLACE piece replaces its SEARCH piece;
5. quoted line numbers: a repair that copied the ``NNN | `` prefixes our own error messages put in
   front of quoted lines (:func:`closest_lines`) is tried again without them, when every non-blank
   SEARCH line carries one and no line of the file itself looks like that.

The ladder follows the edit-format lessons of Aider's SEARCH/REPLACE coder (models get whitespace
wrong far more often than content); the code here is our own. When nothing matches, the error says
what was allowed for and quotes the closest window of the file (difflib) with line numbers, so the
repair turn can fix the quote.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

from agent.elision import ElisionMismatch, count_elisions, is_elision, split_pieces
from agent.errors import ProposalError
from agent.line_match import (
    block_lines,
    expand_leading_tabs,
    has_leading_tab,
    locate,
    space_indent_unit,
)

_CLOSEST_CANDIDATES = 25  # windows kept after the cheap quick_ratio filter, before the exact ratio
# The prefix closest_lines writes ("  12 | code"); a blank quoted line may have lost its last space.
_LINE_NUMBER = re.compile(r"^[ \t]*\d+ ?\|(?: |$)")


def apply_search_replace(text: str, search: str, replace: str, *, path: str, label: str) -> str:
    """``text`` with the one place matching ``search`` replaced by ``replace``.

    ``label`` names the block in error messages (e.g. "edit block 2"). Raises :class:`ProposalError`
    when the SEARCH text is empty, matches nowhere (quoting the closest lines), matches more than
    once (giving the line numbers of each match), or pairs its ``...`` lines badly with REPLACE's.
    """
    if not search.strip():
        if not text.strip():
            return replace  # a new or empty file: the REPLACE text is its content
        raise ProposalError(
            f"{label} ({path}): the SEARCH text is empty. Quote the exact lines of {path} to replace; "
            "to add code, quote the lines next to where it goes and repeat them in REPLACE."
        )
    unit = space_indent_unit(text)
    search, replace, tabbed = _in_file_style(unit, search, replace)
    result = _apply_ladder(text, search, replace, path=path, label=label)
    if result is not None:
        return result
    unnumbered = _without_line_numbers(text, search, replace)
    if unnumbered is not None:
        search, replace, tabbed_after_numbers = _in_file_style(unit, *unnumbered)  # "12 | \t..."
        tabbed = tabbed or tabbed_after_numbers
        result = _apply_ladder(text, search, replace, path=path, label=label)
        if result is not None:
            return result
    tab_note = f"tabs in the indentation read as {len(unit)} spaces" if unit and tabbed else ""
    what, quoted = "the SEARCH text", search
    if count_elisions(search):  # then its first piece matched nowhere (see _apply_elided)
        what = "the part of the SEARCH text before its first `...`"
        quoted = "\n".join(split_pieces(search, replace)[0].search)
    message = _no_match(text, quoted, path=path, label=label, what=what, allowed=tab_note)
    if unnumbered is not None:
        message += (
            "\nThe `NNN | ` numbers in front of quoted lines are not part of the file; they were left "
            "out of SEARCH before matching, and should not be copied."
        )
    raise ProposalError(message)


def closest_lines(text: str, search: str) -> str:
    """The window of ``text`` most similar to ``search`` (difflib ratio), quoted with line numbers."""
    file_lines = text.split("\n")
    best, size = _closest_window(file_lines, block_lines(search))
    return _quote(file_lines, best, size)


def _quote(file_lines: list[str], start: int, size: int) -> str:
    width = len(str(start + size))
    return "\n".join(
        f"{number:>{width}} | {line}"
        for number, line in enumerate(file_lines[start : start + size], start=start + 1)
    )


def _in_file_style(unit: str | None, search: str, replace: str) -> tuple[str, str, bool]:
    """The block with its indentation tabs expanded to ``unit`` (the file's, None for a file that
    indents with tabs itself), and whether there were any."""
    if unit is None or not (has_leading_tab(search) or has_leading_tab(replace)):
        return search, replace, False
    return expand_leading_tabs(search, unit), expand_leading_tabs(replace, unit), True


def _apply_ladder(text: str, search: str, replace: str, *, path: str, label: str) -> str | None:
    """Levels 1-4 for one reading of the block: the new text, or None when nothing matches."""
    exact = _find_all(text, search)
    if len(exact) > 1:
        raise _ambiguous(label, path, [text.count("\n", 0, pos) + 1 for pos in exact])
    if len(exact) == 1:
        _refuse_unpaired_elision(text, search, replace, path=path, label=label)
        return text[: exact[0]] + replace + text[exact[0] + len(search) :]
    file_lines = text.split("\n")
    matches = locate(file_lines, block_lines(search))
    if len(matches) > 1:
        raise _ambiguous(label, path, [match.start + 1 for match in matches])
    if matches:
        _refuse_unpaired_elision(text, search, replace, path=path, label=label)
        (match,) = matches
        new_lines = [match.reindent(line) for line in block_lines(replace)]
        return "\n".join(file_lines[: match.start] + new_lines + file_lines[match.end :])
    if count_elisions(search):
        return _apply_elided(text, search, replace, path=path, label=label)
    return None


def _apply_elided(text: str, search: str, replace: str, *, path: str, label: str) -> str | None:
    """Level 4: SEARCH pieces between ``...`` lines found in order; what lies between them is kept."""
    try:
        pieces = split_pieces(search, replace)
    except ElisionMismatch as exc:
        raise ProposalError(f"{label} ({path}): {exc}") from exc
    file_lines = text.split("\n")
    out: list[str] = []
    position = 0  # file lines before it are settled
    for number, piece in enumerate(pieces):
        matches = locate(file_lines, piece.search, start=position)
        if not matches:
            if number == 0:
                return None  # nothing of it matches: the caller's no-match error quotes the first piece
            nth = {1: "first", 2: "second", 3: "third"}.get(number, f"{number}th")
            what = f"the part of the SEARCH text after its {nth} `...` line"
            quoted = "\n".join(piece.search)
            raise ProposalError(
                _no_match(text, quoted, path=path, label=label, what=what, allowed="", after=position)
            )
        if number == 0 and len(matches) > 1:
            raise _ambiguous(label, path, [match.start + 1 for match in matches], "before its first `...`")
        match = matches[0]  # later pieces: the first match after the piece before, the shortest gap
        out += file_lines[position : match.start]
        out += [match.reindent(line) for line in piece.replace]
        position = match.end
    return "\n".join(out + file_lines[position:])


def _refuse_unpaired_elision(text: str, search: str, replace: str, *, path: str, label: str) -> None:
    """A ``...`` in REPLACE with none in SEARCH would write a literal ``...`` where the model meant
    "unchanged lines" (and ``...`` is valid Python, so nothing later would catch it)."""
    extra = count_elisions(replace) - count_elisions(search)
    if extra > 0 and not any(is_elision(line) for line in text.split("\n")):
        raise ProposalError(
            f"{label} ({path}): REPLACE has {extra} more `...` line(s) than SEARCH. A `...` line stands "
            "for unchanged lines and needs its partner in SEARCH, at the same place among the lines "
            "around it; write new code out in full."
        )


def _without_line_numbers(text: str, search: str, replace: str) -> tuple[str, str] | None:
    """SEARCH and REPLACE without the ``NNN | `` prefixes copied from a quote, if SEARCH carries one on
    every non-blank line (``...`` aside) and the file has no line that starts like that."""
    quoted = [line for line in search.split("\n") if line.strip() and not is_elision(line)]
    if not quoted or not all(_LINE_NUMBER.match(line) for line in quoted):
        return None
    if any(_LINE_NUMBER.match(line) for line in text.split("\n")):
        return None  # "  12 | x" is valid Python: a file may hold such lines, and then so may SEARCH

    def strip(block: str) -> str:
        return "\n".join(_LINE_NUMBER.sub("", line, count=1) for line in block.split("\n"))

    return strip(search), strip(replace)


def _no_match(
    text: str, search: str, *, path: str, label: str, what: str, allowed: str, after: int = 0
) -> str:
    """The no-match message; ``after`` > 0: the part had to match after that line (an earlier piece)."""
    file_lines = text.split("\n")
    search_lines = block_lines(search)
    allowances = ["trailing whitespace", "blank lines at its ends", "a consistent indentation offset"]
    allowances += [allowed] if allowed else []
    where = f" after line {after}, where the part before that `...` ends" if after else ""
    message = (
        f"{label} ({path}): {what} does not match any part of {path}{where}, even allowing for "
        f"{', '.join(allowances[:-1])} and {allowances[-1]}. SEARCH must copy existing lines exactly."
    )
    if after >= len(file_lines):
        return message + f" Nothing of {path} follows that line."
    best, size = _closest_window(file_lines, search_lines, after=after)
    message += f" The closest lines in {path}{' after it' if after else ''} are:\n"
    message += _quote(file_lines, best, size)
    if _squeezed(file_lines[best : best + size]) == _squeezed(search_lines):
        message += (
            "\nThey differ from SEARCH only in whitespace at the start of or inside lines: copy them "
            "character for character."
        )
    return message


def _squeezed(lines: list[str]) -> str:
    return "".join("".join(line.split()) for line in lines)


def _closest_window(file_lines: list[str], search_lines: list[str], *, after: int = 0) -> tuple[int, int]:
    """(start, size) of the window of the file (from line index ``after`` on) most like the quote."""
    size = min(len(search_lines), len(file_lines) - after)
    target = "\n".join(line.strip() for line in search_lines)
    windows = range(after, max(after + 1, len(file_lines) - size + 1))
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(target)  # SequenceMatcher caches facts about seq2: the fixed side goes there

    def window_text(start: int) -> str:
        return "\n".join(line.strip() for line in file_lines[start : start + size])

    def score(start: int, measure: Callable[[], float]) -> float:
        matcher.set_seq1(window_text(start))
        return measure()

    shortlist = sorted(windows, key=lambda s: score(s, matcher.quick_ratio), reverse=True)
    best = max(shortlist[:_CLOSEST_CANDIDATES], key=lambda s: (score(s, matcher.ratio), -s))
    return best, size


def _find_all(text: str, needle: str) -> list[int]:
    positions, start = [], text.find(needle)
    while start != -1:
        positions.append(start)
        start = text.find(needle, start + 1)
    return positions


def _ambiguous(label: str, path: str, line_numbers: list[int], part: str = "") -> ProposalError:
    where = ", ".join(str(n) for n in line_numbers)
    what = f"the part of the SEARCH text {part}" if part else "the SEARCH text"
    return ProposalError(
        f"{label} ({path}): {what} matches {len(line_numbers)} places (starting at lines "
        f"{where}); it must match exactly one. Include more surrounding lines to make it unique."
    )
