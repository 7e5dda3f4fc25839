"""How many bytes the program counts for: as it is, or as the self-extracting file it can ship as.

The challenge counts the script's bytes as shipped, and records shipped theirs compressed: a two-line
wrapper that decompresses (LZMA2, base85) and executes the source. A campaign that will ship its
programs that way (``autogolf export --self-extracting``, which checks that both forms score the
same) counts each program's wrapper, which the harness builds itself from the program's text; a
program cannot choose its own count.
"""

from __future__ import annotations

import base64
import lzma
from enum import StrEnum
from pathlib import Path

_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


class CodeBytes(StrEnum):
    READABLE = "readable"  # the program file's own bytes
    SELF_EXTRACTING = "self_extracting"  # the bytes of self_extracting(program)


def self_extracting(source: str) -> str:
    """``source`` as a self-extracting program: it decompresses and executes the original."""
    payload = base64.b85encode(
        lzma.compress(source.encode("utf-8"), format=lzma.FORMAT_RAW, filters=_FILTERS)
    )
    return (
        "import lzma as L,base64 as B\n"
        f'exec(L.decompress(B.b85decode("{payload.decode("ascii")}"),format=L.FORMAT_RAW,'
        'filters=[{"id":L.FILTER_LZMA2}]))\n'
    )


def counted_code_bytes(entry_path: Path, mode: CodeBytes) -> int:
    """The program's code bytes under ``mode``: its entry file (or that file's wrapper), plus every
    other Python file in its folder (modules it imports from there, which ship beside it)."""
    if mode is CodeBytes.READABLE:
        entry = entry_path.stat().st_size
    else:
        entry = len(self_extracting(entry_path.read_text(encoding="utf-8")).encode("ascii"))
    modules = (
        p for p in entry_path.parent.rglob("*.py") if p != entry_path and p.is_file() and not p.is_symlink()
    )
    return entry + sum(p.stat().st_size for p in modules)
