"""Reading Python source that this interpreter may not be able to parse as a whole.

Records were written for the Python their authors ran; the later ones use PEP 701 f-strings (Python
3.12: the same quote nested inside a replacement field), which Python 3.11's :mod:`ast` rejects, and
one such f-string anywhere makes the whole file unparseable. The importer still has to read the
settings and imports of such a file, so this module cuts source into top-level-ish statements with a
small quote- and bracket-aware scanner and parses each one on its own: a statement that holds no
3.12-only syntax (nearly all of them) parses fine, and only the few that do are lost.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

_OPENERS = "([{"
_CLOSERS = ")]}"
# Statement heads that cannot stand alone; ``elif x:`` is read as ``if x:`` so its test is kept.
_CONTINUATION_HEADS = ("else", "except", "finally", "case")


class ParseMethod(StrEnum):
    """How a piece of the importer read the program."""

    AST = "ast"  # the whole file parsed with this interpreter's ast
    TEXT = "text"  # ast could not parse the file: statement-wise parsing or a regex over the text


@dataclass(frozen=True)
class Statement:
    """One logical statement: where it starts (1-based line, column of its first character) and its text."""

    line: int
    indent: int
    text: str
    after_semicolon: bool = False  # it follows a `;` on the same logical line (a one-line suite goes on)


def parse_module(source: str, filename: str) -> ast.Module | SyntaxError:
    """The module's tree, or the SyntaxError this interpreter raised for it (returned, not raised)."""
    try:
        return ast.parse(source, filename=filename)
    except SyntaxError as exc:
        return exc


def split_statements(text: str) -> list[Statement]:
    """Cut ``text`` into logical statements without parsing it.

    A statement ends at a newline outside brackets and strings (a backslash continues the line) or at
    a ``;`` outside them; comments are dropped. Strings are tracked by their quote characters only,
    which is enough to keep brackets and ``;`` inside them from counting; a 3.12 f-string that nests
    its own quote still balances, since its quotes come in pairs.
    """
    statements: list[Statement] = []
    buffer: list[str] = []
    start: tuple[int, int] | None = None
    depth = 0
    quote = ""  # the open string's delimiter: ', ", ''' or """
    joined = False  # the statement being read follows a `;`
    line, column, i = 1, 0, 0

    def flush(by_semicolon: bool) -> None:
        nonlocal start, joined
        body = "".join(buffer).strip()
        if body and start is not None:
            statements.append(Statement(line=start[0], indent=start[1], text=body, after_semicolon=joined))
        buffer.clear()
        start, joined = None, by_semicolon

    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                buffer.append(text[i : i + 2])
                if text[i + 1 : i + 2] == "\n":
                    line, column = line + 1, -1
                i, column = i + 2, column + 2
                continue
            if text.startswith(quote, i):
                buffer.append(quote)
                i, column, quote = i + len(quote), column + len(quote), ""
                continue
            if char == "\n" and len(quote) == 1:
                quote = ""  # an unterminated one-line string: recover at the line's end
            else:
                buffer.append(char)
                if char == "\n":
                    line, column = line + 1, -1
                i, column = i + 1, column + 1
                continue
        if char == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        if char == "\\" and text[i + 1 : i + 2] == "\n":
            buffer.append(" ")
            i, line, column = i + 2, line + 1, 0
            continue
        if char == ";" and depth == 0:
            flush(by_semicolon=True)
            i, column = i + 1, column + 1
            continue
        if char == "\n":
            if depth == 0:
                flush(by_semicolon=False)
            else:
                buffer.append(char)
            i, line, column = i + 1, line + 1, 0
            continue
        if not char.isspace() and start is None:
            start = (line, column)
        if char in "'\"":
            quote = char * 3 if text.startswith(char * 3, i) else char
            buffer.append(quote)
            i, column = i + len(quote), column + len(quote)
            continue
        if char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth = max(0, depth - 1)
        buffer.append(char)
        i, column = i + 1, column + 1
    flush(by_semicolon=False)
    return statements


def parse_statement(statement: Statement) -> ast.Module | None:
    """Parse one statement on its own, line numbers as in the file; None when it does not parse.

    A compound statement's header (``if x:``, ``class C:``) is completed with ``pass`` so that the
    expressions in it are kept; ``else:`` and its kin carry nothing and are skipped.
    """
    text = statement.text
    head = text.split(None, 1)[0].rstrip(":")
    if head in _CONTINUATION_HEADS:
        return None
    if head == "elif":
        text = "if" + text[len("elif") :]
    if text.endswith(":"):
        text += " pass"
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    return ast.increment_lineno(tree, statement.line - 1)


def import_aliases(statements: Iterable[ast.stmt]) -> dict[str, str]:
    """Local name -> what it stands for, from the import statements among ``statements``.

    ``import lzma as L`` gives ``L -> lzma``; ``from os import environ`` gives ``environ -> os.environ``.
    """
    names: dict[str, str] = {}
    for node in statements:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:  # `import os.path` binds `os`
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """The dotted name an expression refers to, through import aliases: ``L.decompress`` -> ``lzma.decompress``.

    ``__import__("zlib")`` counts as the module it imports; anything else that is not a name or an
    attribute of one gives None.
    """
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = dotted(node.value, aliases)
        return None if base is None else f"{base}.{node.attr}"
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "__import__"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def try_guards(statements: list[Statement]) -> list[frozenset[str]]:
    """For each statement, the exception names of the ``try`` blocks it sits in (by indentation).

    What :mod:`ast` gives for free when the file parses: whether an ``import`` is inside
    ``try: ... except ImportError:``. A bare ``except:`` counts as ``BaseException``.
    """
    guards: list[set[str]] = [set() for _ in statements]
    open_tries: list[tuple[int, list[int]]] = []  # (indent of `try:`, statements in its body)
    for index, statement in enumerate(statements):
        while open_tries and statement.indent <= open_tries[-1][0]:
            indent, members = open_tries.pop()
            if statement.indent == indent and statement.text.startswith("except"):
                caught = _caught(statement.text)
                for member in members:
                    guards[member] |= caught
        for _, members in open_tries:
            members.append(index)
        if statement.text == "try:":
            open_tries.append((statement.indent, []))
    return [frozenset(g) for g in guards]


def _caught(header: str) -> set[str]:
    clause = header.removeprefix("except").split(" as ")[0].rstrip(":").strip(" ()")
    names = {name.strip() for name in clause.split(",") if name.strip()}
    return names or {"BaseException"}
