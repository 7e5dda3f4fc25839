"""``...`` elision in SEARCH/REPLACE blocks: a ``...`` line stands for unchanged lines of the file.

Models shorten long blocks this way (Aider's SEARCH/REPLACE coder accepts it too, as "dotdotdots";
the idea is borrowed, the code is ours)::

    <<<<<<< SEARCH
    def forward(self, x):
        x = self.embed(x)
        ...
        return self.head(x)
    =======
    def forward(self, x):
        x = self.embed(x) * self.scale
        ...
        return self.head(x)
    >>>>>>> REPLACE

An elision line holds only ``...`` (or ``…``), or is a comment starting with one (``# ...``,
``# ... unchanged ...``), at any indentation. The lines between them are pieces; the k-th ``...`` of
SEARCH pairs with the k-th ``...`` of REPLACE, so both must have the same number. A ``...`` pair at
the very start or end of both says only that the file goes on, and is dropped. This module only
splits blocks into pieces; :mod:`agent.search_replace` finds them in the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.line_match import trim_blank_edges

_ELISION = re.compile(r"^\s*(?:#\s*)?(?:\.\.\.|…)(?:\s.*)?$")


class ElisionMismatch(ValueError):
    """SEARCH and REPLACE use ``...`` in ways that cannot be paired; the message is for the model."""


@dataclass(frozen=True)
class Piece:
    search: list[str]  # blank edge lines trimmed
    replace: list[str]


def is_elision(line: str) -> bool:
    return bool(_ELISION.match(line))


def count_elisions(block: str) -> int:
    return sum(1 for line in block.split("\n") if is_elision(line))


def split_pieces(search: str, replace: str) -> list[Piece]:
    """The pieces of a block whose SEARCH has ``...`` lines, paired in order.

    Raises :class:`ElisionMismatch` when the counts of ``...`` lines differ, or a SEARCH piece is
    empty (nothing would say where the REPLACE lines go).
    """
    search_parts = _parts(search)
    replace_parts = _parts(replace)
    if len(search_parts) != len(replace_parts):
        raise ElisionMismatch(
            f"SEARCH has {len(search_parts) - 1} `...` line(s) and REPLACE has {len(replace_parts) - 1}. "
            "A `...` line stands for unchanged lines of the file; each one in SEARCH needs its own `...` "
            "in REPLACE, at the same place among the lines around it. Or quote the lines in full."
        )
    # A leading or trailing pair says only that the file goes on before or after the quoted lines.
    if len(search_parts) > 1 and not search_parts[0] and not replace_parts[0]:
        search_parts, replace_parts = search_parts[1:], replace_parts[1:]
    if len(search_parts) > 1 and not search_parts[-1] and not replace_parts[-1]:
        search_parts, replace_parts = search_parts[:-1], replace_parts[:-1]
    if any(not part for part in search_parts):
        raise ElisionMismatch(
            "SEARCH has a `...` line with no quoted lines on one side of it (at its start or end, or "
            "next to another `...`), so it is not clear where the change goes. Quote real lines of the "
            "file before and after each `...`."
        )
    return [Piece(search=s, replace=r) for s, r in zip(search_parts, replace_parts, strict=True)]


def _parts(block: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for line in block.split("\n"):
        if is_elision(line):
            parts.append([])
        else:
            parts[-1].append(line)
    return [trim_blank_edges(part) for part in parts]
