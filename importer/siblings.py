"""The modules a program imports from its own folder (``import helpers`` beside ``helpers.py``), found
by reading, never running: they travel with the program, since it cannot run without them.

A sibling is a ``<name>.py`` file or a ``<name>/`` package beside the program; its own sibling
imports are followed too. Only Python files are carried, each named by its path relative to the
folder.
"""

from __future__ import annotations

import ast
from pathlib import Path

from importer.errors import RecordImportError

MAX_FILES = 64  # a records folder ships one program and perhaps a helper or two
MAX_BYTES = 4_000_000


def sibling_modules(source: str, folder: Path, *, exclude: tuple[Path, ...] = ()) -> dict[str, str]:
    """``{relative path: text}`` of every sibling module ``source`` needs, transitively.

    Raises :class:`RecordImportError` for a sibling that is not UTF-8 text or when they are more
    than a record would ship (:data:`MAX_FILES`, :data:`MAX_BYTES`)."""
    folder = folder.resolve()
    skip = {p.resolve() for p in exclude}
    found: dict[str, str] = {}
    pending = [source]
    while pending:
        for path in _sibling_files(pending.pop(), folder):
            rel = path.relative_to(folder).as_posix()
            if rel in found or path.resolve() in skip:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise RecordImportError(
                    f"{path}: a module the program imports is not UTF-8 text ({exc.reason})",
                    "save it as UTF-8, or remove the import",
                ) from None
            found[rel] = text
            pending.append(text)
            if len(found) > MAX_FILES or sum(len(t) for t in found.values()) > MAX_BYTES:
                raise RecordImportError(
                    f"{folder}: the program imports more sibling code than a record ships "
                    f"(over {MAX_FILES} files or {MAX_BYTES:,} bytes)",
                    "import the program from a folder that holds only the record",
                )
    return found


def _sibling_files(source: str, folder: Path) -> list[Path]:
    try:
        tree = ast.parse(source)
    except SyntaxError:  # this Python cannot read it: its siblings cannot be known, none are carried
        return []
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    files: list[Path] = []
    for name in sorted(names):
        module, package = folder / f"{name}.py", folder / name
        if module.is_file():
            files.append(module)
        elif (package / "__init__.py").is_file():
            files.extend(sorted(p for p in package.rglob("*.py") if p.is_file()))
    return files
