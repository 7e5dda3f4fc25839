"""The reply format every model can produce, and its parser.

A reply is plain text with tagged sections::

    <hypothesis>One line: what changes and why it should lower val_bpb.</hypothesis>
    <rationale>
    A few sentences: the evidence, the expected effect, the risk.
    </rationale>
    <edit path="train_gpt.py">
    <<<<<<< SEARCH
    exact lines copied from the current program
    =======
    the lines that replace them
    >>>>>>> REPLACE
    </edit>

An ``<edit>`` holds one or more SEARCH/REPLACE blocks for one file. Instead of blocks, a change may be
given as a unified diff in a fenced ```diff block (``--- a/train_gpt.py`` / ``+++ b/train_gpt.py``
headers, ``@@`` hunks) or inside an ``<edit>``.

The parser is strict about structure (a SEARCH without its ``=======`` and ``>>>>>>> REPLACE`` is an
error naming the reply line) and forgiving about wrapping: the whole reply in ``` fences, chatter
before and after (Markdown headings included), fences inside an ``<edit>``, CRLF line endings,
5-9 marker characters, an ``<edit>`` without ``path`` (the entry file), SEARCH/REPLACE blocks with no
``<edit>`` at all (the entry file), a missing ``</edit>`` (the edit runs to the end of the reply), and
the hypothesis and rationale as Markdown (``## Hypothesis`` headings at any level, ``**Hypothesis:**``
bold labels; see :mod:`agent.sections`) instead of tags. Reasoning (``<think>``, ``<thinking>``,
``<reasoning>``; see :mod:`agent.reasoning`) is dropped before anything is read, so an edit or a
hypothesis drafted while thinking is never taken; a reply that is only reasoning is an error saying
its answer never came. Whitespace, ``...`` elision and quoted line numbers inside a block are the
matcher's business (:mod:`agent.search_replace`).
The same format is used by the ``replay`` proposer, so hand-written proposals go through this very
parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.errors import ProposalError
from agent.proposal import Edit, EditKind
from agent.reasoning import split_reasoning
from agent.sections import read_sections
from agent.unified_diff import hunk_end

_EDIT = re.compile(
    r"<edit\b([^>]*)>(.*?)(?:</edit>|(?=<edit\b)|\Z)", re.DOTALL | re.IGNORECASE
)  # a missing </edit> ends at the next <edit> or the end of the reply
_PATH_ATTR = re.compile(r"""path\s*=\s*["']?([^"'\s>]+)["']?""", re.IGNORECASE)
_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
_DIFF_FENCE = re.compile(r"^```+\s*(?:diff|patch|udiff)\s*\n(.*?)^```+\s*$", re.DOTALL | re.MULTILINE)
_DIFF_OLD = re.compile(r"^--- (\S+)")
_DIFF_NEW = re.compile(r"^\+\+\+ (\S+)")
_MAX_HYPOTHESIS_CHARS = 300


@dataclass(frozen=True)
class ParsedReply:
    hypothesis: str
    rationale: str
    edits: tuple[Edit, ...]


def parse_reply(text: str, *, entry: str = "train_gpt.py") -> ParsedReply:
    """Read a reply into its hypothesis, rationale and edits (not yet applied).

    Raises :class:`ProposalError` with a message meant for the model when the reply has no
    hypothesis, no edit, or a malformed SEARCH/REPLACE block.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    split = split_reasoning(text)
    if split.only_reasoning:
        raise ProposalError(
            "The reply holds only reasoning (a <think> block) and no answer after it: the answer never "
            "came, probably because the reasoning used up the output. Think briefly, then give the "
            "answer itself: <hypothesis>, <rationale> and the edits, outside any <think> block."
        )
    text = split.answer
    if not text.strip():
        raise ProposalError("The reply is empty. Give <hypothesis>, <rationale> and the edits.")
    sections = read_sections(text)
    if not sections.hypothesis:
        raise ProposalError(
            "The reply has no <hypothesis>...</hypothesis> section. Start the reply with "
            "<hypothesis>one line saying what you change and why</hypothesis>."
        )
    hypothesis, rationale = sections.hypothesis, sections.rationale
    if len(hypothesis) > _MAX_HYPOTHESIS_CHARS:
        hypothesis = hypothesis[: _MAX_HYPOTHESIS_CHARS - 1].rstrip() + "…"

    edits: list[Edit] = []
    for match in _EDIT.finditer(text):
        attributes, body = match.group(1), match.group(2)
        path_match = _PATH_ATTR.search(attributes)
        path = normalize_path(path_match.group(1)) if path_match else entry
        body_line = text.count("\n", 0, match.start(2)) + 1
        edits.extend(_parse_edit_body(body, path, first_line=body_line))
    # The reply with every <edit> blanked out, keeping its newlines so reply line numbers stay right.
    outside_edits = _EDIT.sub(lambda match: "\n" * match.group(0).count("\n"), text)

    # Forgiveness for replies that skip the <edit> wrapper: bare blocks edit the entry file,
    # fenced diffs name their own files.
    edits.extend(_parse_search_replace(outside_edits, entry, first_line=1))
    for fence in _DIFF_FENCE.finditer(outside_edits):
        edits.extend(split_unified_diff(fence.group(1)))
    if not edits:  # an unfenced diff in the reply's prose
        edits.extend(split_unified_diff(_strip_fences(outside_edits)))
    if not edits:
        raise ProposalError(
            'The reply has no edit. Give at least one <edit path="..."> with SEARCH/REPLACE blocks '
            "(<<<<<<< SEARCH / ======= / >>>>>>> REPLACE), or a ```diff unified diff."
        )
    return ParsedReply(hypothesis=hypothesis, rationale=rationale, edits=tuple(edits))


def normalize_path(path: str) -> str:
    """``./train_gpt.py`` and ``train_gpt.py`` name the same file; so do ``a/x`` and ``b/x`` in diffs."""
    path = path.strip().strip("`").replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def _parse_edit_body(body: str, path: str, *, first_line: int) -> list[Edit]:
    blocks = _parse_search_replace(body, path, first_line=first_line)
    if blocks:
        return blocks
    fenced = [m.group(1) for m in _DIFF_FENCE.finditer(body)]
    diff_text = "\n".join(fenced) if fenced else _strip_fences(body)
    if re.search(r"^@@", diff_text, re.MULTILINE):
        diffs = split_unified_diff(diff_text, default_path=path)
        if diffs:
            return diffs
    raise ProposalError(
        f'The <edit path="{path}"> starting at reply line {first_line} holds neither a SEARCH/REPLACE '
        "block nor a unified diff."
    )


def _parse_search_replace(text: str, path: str, *, first_line: int) -> list[Edit]:
    """Every ``<<<<<<< SEARCH / ======= / >>>>>>> REPLACE`` block in ``text``, in order.

    Outside a block only a marker that must belong to a broken block is an error: a stray REPLACE
    line, or a divider whose next marker is a REPLACE line (the block lost its SEARCH line). Any other
    line of 5-9 ``=`` is chatter, such as a Markdown setext heading underline ("Plan" over "=====").
    """
    lines = text.split("\n")
    edits: list[Edit] = []
    i = 0
    while i < len(lines):
        if _SEARCH.match(lines[i]):
            search, replace, i = _read_block(lines, i, path, first_line=first_line)
            edits.append(Edit(path=path, kind=EditKind.SEARCH_REPLACE, search=search, replace=replace))
            continue
        if _REPLACE.match(lines[i]) or (_DIVIDER.match(lines[i]) and _next_marker_is_replace(lines, i + 1)):
            raise ProposalError(
                f"Reply line {first_line + i}: `{lines[i].strip()}` appears without a `<<<<<<< SEARCH` line "
                "before it. Each block is <<<<<<< SEARCH, the old lines, =======, the new lines, "
                ">>>>>>> REPLACE."
            )
        i += 1
    return edits


def _read_block(lines: list[str], start: int, path: str, *, first_line: int) -> tuple[str, str, int]:
    """The SEARCH and REPLACE texts of the block opened at ``lines[start]``, and the index after it."""
    dividers: list[int] = []
    end = None
    for i in range(start + 1, len(lines)):
        if _REPLACE.match(lines[i]):
            end = i
            break
        if _SEARCH.match(lines[i]):
            break
        if _DIVIDER.match(lines[i]):
            dividers.append(i)
    if not dividers:
        raise ProposalError(
            f"Reply line {first_line + start}: the SEARCH block for {path} has no `=======` line "
            "after its SEARCH text."
        )
    if end is None:
        raise ProposalError(
            f"Reply line {first_line + start}: the SEARCH block for {path} has no "
            "`>>>>>>> REPLACE` line after its REPLACE text."
        )
    # Several candidates: the code itself may hold a 5-9 "=" line (an RST docstring underline), so the
    # canonical seven-character divider wins; otherwise the first one, as before.
    divider = next((i for i in dividers if lines[i].strip() == "======="), dividers[0])
    return _block_text(lines[start + 1 : divider]), _block_text(lines[divider + 1 : end]), end + 1


def _next_marker_is_replace(lines: list[str], start: int) -> bool:
    for line in lines[start:]:
        if _SEARCH.match(line) or _DIVIDER.match(line):
            return False
        if _REPLACE.match(line):
            return True
    return False


def _block_text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _strip_fences(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not line.lstrip().startswith("```"))


def split_unified_diff(diff: str, *, default_path: str | None = None) -> list[Edit]:
    """Split a unified diff into one :class:`Edit` per file (the path from its ``+++`` header).

    A diff with hunks but no headers is taken to be for ``default_path`` (the ``<edit>``'s file).
    """
    lines = diff.replace("\r\n", "\n").split("\n")
    starts = _file_header_starts(lines)
    if not starts:
        if default_path is None or not any(line.startswith("@@") for line in lines):
            return []
        header = f"--- a/{default_path}\n+++ b/{default_path}\n"
        first_hunk = next(i for i, line in enumerate(lines) if line.startswith("@@"))
        body = "\n".join(_diff_lines(lines[first_hunk:]))
        return [Edit(path=default_path, kind=EditKind.UNIFIED_DIFF, diff=header + body + "\n")]
    edits = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        section = "\n".join(_diff_lines(lines[start:end])) + "\n"
        new_name = _DIFF_NEW.match(lines[start + 1]).group(1)  # type: ignore[union-attr]
        old_name = _DIFF_OLD.match(lines[start]).group(1)  # type: ignore[union-attr]
        name = old_name if new_name == "/dev/null" else new_name
        edits.append(Edit(path=diff_path(name), kind=EditKind.UNIFIED_DIFF, diff=section))
    return edits


def _file_header_starts(lines: list[str]) -> list[int]:
    """Where each ``--- old`` / ``+++ new`` header pair starts, skipping hunk bodies: a removed line
    ``-- x`` reads ``--- x`` in the diff and must not start a new file."""
    starts: list[int] = []
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("@@"):
            i = hunk_end(lines, i)
        elif _DIFF_OLD.match(lines[i]) and _DIFF_NEW.match(lines[i + 1]):
            starts.append(i)
            i += 2
        else:
            i += 1
    return starts


def _diff_lines(lines: list[str]) -> list[str]:
    """The diff part of ``lines``: up to the first line that cannot belong to a diff (trailing prose),
    without trailing blank lines (which git would read as blank context)."""
    kept: list[str] = []
    for number, line in enumerate(lines):
        if number >= 2 and line[:1] not in (" ", "+", "-", "@", "\\", ""):
            break
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return kept


def diff_path(header_name: str) -> str:
    """The file a diff header names: ``b/train_gpt.py`` -> ``train_gpt.py``."""
    name = normalize_path(header_name)
    if name.startswith(("a/", "b/")):
        name = name[2:]
    return name
