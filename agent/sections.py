"""The hypothesis and rationale of a reply: ``<hypothesis>`` / ``<rationale>`` tags, or Markdown.

The prompt asks for tags, but many models answer in Markdown instead (GPT-4.1 and Llama like
``## Hypothesis`` headings, Claude and Qwen ``**Hypothesis:**`` bold labels, some a plain
``Hypothesis:`` label). Tags win where present; each section falls back to Markdown on its own.

A Markdown label counts only in the reply's prose, never inside an ``<edit>``, a SEARCH/REPLACE block
or a code fence, where ``# Hypothesis: ...`` is a Python comment of the program. Its text is the rest
of the label's line, or else the paragraph under it; a rationale runs on over several paragraphs, up
to the next heading or label, edit, block, fence or diff.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HYPOTHESIS_TAG = re.compile(r"<hypothesis>(.*?)</hypothesis>", re.DOTALL | re.IGNORECASE)
_RATIONALE_TAG = re.compile(r"<rationale>(.*?)(?:</rationale>|(?=<edit\b)|\Z)", re.DOTALL | re.IGNORECASE)
_EMPHASIS = r"(?:\*\*|__|\*|_)?"
_NUMBER = r"(?:\d+[.)]\s*)?"  # "### 2. Rationale"
# "## Hypothesis", "- **Hypothesis:** text", "**Hypothesis**: text", "Hypothesis: text". The name
# must end there ("Hypothesis-driven" is a word of prose).
_LABEL = re.compile(
    rf"^\s{{0,3}}(?:(?P<hashes>#{{1,6}})\s*)?(?:[-+]\s+)?{_NUMBER}(?P<bold>\*\*|__)?{_EMPHASIS}{_NUMBER}"
    rf"(?P<name>hypothesis|rationale)(?![\w-])\s*(?P<colon>:?)\s*{_EMPHASIS}\s*(?P<colon2>:?)"
    r"\s*(?:[-–—]\s+)?(?P<rest>.*)$",
    re.IGNORECASE,
)
_HEADING = re.compile(r"^\s{0,3}(?:#{1,6}\s|(?:-{3,}|\*{3,}|_{3,})\s*$)")  # or a thematic break
# A bold label that introduces the edit ("**Changes:**", "**Proposed edit**") ends a rationale; other
# bold labels ("**Risk:**") are part of it.
_EDIT_LABEL = re.compile(
    r"^\s*(?:[-+]\s+)?(?:\*\*|__)(?:the\s+)?(?:proposed\s+)?(?:changes?|edits?|patch|diff|code)\b", re.I
)
_STRUCTURE = re.compile(
    r"^\s*(?:<\s*/?\s*(?:edit|hypothesis|rationale)\b|<{5,9}\s*SEARCH|={5,9}\s*$|>{5,9}\s*REPLACE|```|--- \S)",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^\s*```+\s*(\S*)")
_PROSE_FENCES = {"", "markdown", "md", "text", "txt", "xml"}  # a wrapper around the whole reply
_EDIT_SPAN = re.compile(r"<edit\b.*?(?:</edit>|(?=<edit\b)|\Z)", re.DOTALL | re.IGNORECASE)
_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")


@dataclass(frozen=True)
class Sections:
    hypothesis: str  # "" when the reply has none
    rationale: str


def read_sections(text: str) -> Sections:
    """The hypothesis (one line, whitespace collapsed) and rationale of ``text``, "" where absent."""
    hypothesis_tag = _HYPOTHESIS_TAG.search(text)
    rationale_tag = _RATIONALE_TAG.search(text)
    hypothesis = hypothesis_tag.group(1) if hypothesis_tag and hypothesis_tag.group(1).strip() else ""
    rationale = rationale_tag.group(1).strip() if rationale_tag else ""
    if not hypothesis.strip() or not rationale:
        labelled = _markdown_sections(text)
        hypothesis = hypothesis if hypothesis.strip() else _unwrap(labelled.get("hypothesis", ""))
        rationale = rationale or labelled.get("rationale", "")
    return Sections(hypothesis=" ".join(hypothesis.split()), rationale=rationale)


def _markdown_sections(text: str) -> dict[str, str]:
    """The first Markdown hypothesis and rationale sections of the reply's prose, by lower-case name."""
    lines = text.split("\n")
    prose = _prose_mask(text, lines)
    found: dict[str, str] = {}
    for number, line in enumerate(lines):
        label = _LABEL.match(line) if prose[number] else None
        if label is None or not _is_label(label):
            continue
        name = label.group("name").lower()
        if name in found:
            continue
        rest = label.group("rest").strip()
        body = _body(lines, prose, number + 1, paragraphs=name == "rationale")
        if name == "hypothesis":
            found[name] = rest or body
        else:
            found[name] = "\n".join(part for part in (rest, body) if part)
    return found


def _is_label(label: re.Match[str]) -> bool:
    """A heading, or a line-leading word marked as a label by emphasis or a colon (not prose such as
    "Hypothesis testing matters")."""
    return bool(label.group("hashes") or label.group("bold") or label.group("colon") or label.group("colon2"))


def _body(lines: list[str], prose: list[bool], start: int, *, paragraphs: bool) -> str:
    """The paragraph (or, with ``paragraphs``, the paragraphs) of prose from ``lines[start]`` on."""
    kept: list[str] = []
    for number in range(start, len(lines)):
        line = lines[number]
        if not prose[number] or _ends_section(line):
            break
        if not line.strip() and kept and not paragraphs:
            break
        kept.append(line)
    return "\n".join(kept).strip()


def _ends_section(line: str) -> bool:
    if _STRUCTURE.match(line) or _HEADING.match(line) or _EDIT_LABEL.match(line):
        return True
    label = _LABEL.match(line)
    return label is not None and _is_label(label)


def _prose_mask(text: str, lines: list[str]) -> list[bool]:
    """For each line, whether it is prose: outside edits, SEARCH/REPLACE blocks and code fences."""
    prose = [True] * len(lines)
    for span in _EDIT_SPAN.finditer(text):
        first, last = text.count("\n", 0, span.start()), text.count("\n", 0, span.end())
        for number in range(first, last + 1):
            prose[number] = False
    in_block = in_code_fence = False
    for number, line in enumerate(lines):
        fence = _FENCE.match(line)
        if fence and not in_block:
            if in_code_fence:
                in_code_fence = False
                prose[number] = False
                continue
            if fence.group(1).lower() not in _PROSE_FENCES:
                in_code_fence = True
        if _SEARCH.match(line):
            in_block = True
        if in_block or in_code_fence:
            prose[number] = False
        if _REPLACE.match(line):
            in_block = False
    return prose


def _unwrap(hypothesis: str) -> str:
    """A hypothesis without the emphasis a Markdown answer wraps it in (``**Use a deeper model**``)."""
    text = hypothesis.strip()
    for marker in ("**", "__", "*", "_"):
        inner = text[len(marker) : -len(marker)]
        if text.startswith(marker) and text.endswith(marker) and inner.strip() and marker not in inner:
            return inner.strip()
    return text
