"""A record's readable program, found without running any of it.

Records shrink their code bytes (they count against the 16 MB artifact) by shipping a self-extracting
program: ``exec(lzma.decompress(base64.b85decode("...")))``, sometimes with ``format=FORMAT_RAW`` and a
filter chain (the 2026-04-05 record). Others ship a stub that runs a sibling file,
``exec(open(__file__.replace("train_gpt.py", "train_gpt_decode.py")).read())`` (2026-04-06). Here the
payload literal is found with :mod:`ast` (or, where the wrapper itself does not parse, a strict regex)
and decoded with the codec it names; a stub's path expression is evaluated by a tiny interpreter that
knows ``__file__``, ``str.replace``, ``os.path`` and ``Path`` and nothing else. Both report what they
found (:class:`Wrapping`, the decode :class:`Layer` s) so an export can wrap the program the same way.
"""

from __future__ import annotations

import ast
import base64
import binascii
import bz2
import gzip
import lzma
import re
import zlib
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from importer.errors import RecordImportError
from importer.source import ParseMethod, dotted, import_aliases, parse_module
from importer.stubs import evaluate_path, is_exec, stub_path

_MAX_DEPTH = 8  # wrappers inside wrappers, stubs to stubs: more than this is a loop or an attack


class Wrapping(StrEnum):
    """How the program file given holds its source (the outermost form)."""

    PLAIN = "plain"  # the file is the source
    SELF_EXTRACTING = "self_extracting"  # exec of a decoded literal (see ``layers``)
    EXEC_STUB = "exec_stub"  # runs a sibling file (see ``stub_target``)


class Codec(StrEnum):
    LZMA = "lzma"
    ZLIB = "zlib"
    BZ2 = "bz2"
    GZIP = "gzip"
    NONE = "none"  # the literal is only text-encoded


class Encoding(StrEnum):
    BASE85 = "base85"
    BASE64 = "base64"
    ASCII85 = "ascii85"
    NONE = "none"  # a bytes literal handed straight to the codec


class Layer(BaseModel):
    """One decode step, outermost first; enough to build the same wrapper again."""

    model_config = ConfigDict(frozen=True)

    codec: Codec
    encoding: Encoding
    lzma_format: int | None = None  # lzma.FORMAT_* when the call names one (FORMAT_RAW needs filters)
    lzma_filters: tuple[dict[str, int], ...] | None = None


class Unwrapped(BaseModel):
    """The readable program and how it was wrapped."""

    model_config = ConfigDict(frozen=True)

    source: str
    wrapping: Wrapping
    layers: tuple[Layer, ...] = ()
    stub_target: Path | None = None  # the sibling file the stub runs, relative to its folder
    source_file: Path | None = None  # the file whose (decoded) text is ``source``
    method: ParseMethod = ParseMethod.AST  # TEXT: a wrapper was read by regex, ast could not parse it


_DECODERS: dict[str, tuple[Encoding, Callable[[bytes | str], bytes]]] = {
    "b85decode": (Encoding.BASE85, base64.b85decode),
    "b64decode": (Encoding.BASE64, base64.b64decode),
    "standard_b64decode": (Encoding.BASE64, base64.standard_b64decode),
    "a85decode": (Encoding.ASCII85, base64.a85decode),
}
_CODECS: dict[str, Codec] = {"lzma": Codec.LZMA, "zlib": Codec.ZLIB, "bz2": Codec.BZ2, "gzip": Codec.GZIP}
_LZMA_CONSTANT = re.compile(r"(FORMAT|FILTER|PRESET|CHECK|MODE|MF)_[A-Z0-9_]+")


def unwrap_text(text: str, *, filename: str = "<program>") -> Unwrapped:
    """Decode self-extracting layers of ``text`` (possibly nested) to the readable source.

    Plain source comes back unchanged. Raises :class:`RecordImportError` when a payload does not decode,
    when the file execs something this cannot read without running it, or when it is an exec stub
    (a stub needs its folder: use :func:`unwrap_file`).
    """
    layers: list[Layer] = []
    method = ParseMethod.AST
    for _ in range(_MAX_DEPTH):
        tree = parse_module(text, filename)
        if isinstance(tree, SyntaxError):
            found = _regex_payload(text, filename)
            if found is None:
                break
            method = ParseMethod.TEXT
            text, layer = found
            layers.append(layer)
            continue
        if stub_path(tree) is not None:
            raise RecordImportError(
                f"{filename} is an exec stub that runs another file",
                "import the folder or the file itself (unwrap_file), so the stub's target can be found",
            )
        decoded = _ast_payload(tree, filename)
        if decoded is None:
            break
        text, new_layers = decoded
        layers.extend(new_layers)
    else:
        raise RecordImportError(f"{filename}: more than {_MAX_DEPTH} nested wrappers", "is the file a loop?")
    wrapping = Wrapping.SELF_EXTRACTING if layers else Wrapping.PLAIN
    return Unwrapped(source=text, wrapping=wrapping, layers=tuple(layers), method=method)


def unwrap_file(path: Path) -> Unwrapped:
    """Read ``path`` and return its readable source, following exec stubs within the same folder.

    Raises :class:`RecordImportError` for an unreadable file, a stub whose target leaves the folder or
    does not exist, a chain of stubs deeper than a few, and everything :func:`unwrap_text` refuses.
    """
    folder = path.parent.resolve()
    current = path
    target: Path | None = None
    for _ in range(_MAX_DEPTH):
        text = _read(current)
        tree = parse_module(text, current.name)
        expression = None if isinstance(tree, SyntaxError) else stub_path(tree)
        if expression is None:
            unwrapped = unwrap_text(text, filename=current.name)
            if target is None:
                return unwrapped.model_copy(update={"source_file": current})
            return unwrapped.model_copy(
                update={"wrapping": Wrapping.EXEC_STUB, "stub_target": target, "source_file": current}
            )
        relative = evaluate_path(expression, current.name)
        if relative is None:
            raise RecordImportError(
                f"{current}: runs a file named by `{ast.unparse(expression)}`, which cannot be worked out "
                "without running it",
                "point the import at the file the stub runs",
            )
        resolved = (current.parent / relative).resolve()
        if not resolved.is_relative_to(folder):
            raise RecordImportError(
                f"{current}: the stub runs {relative}, which is outside the record folder {folder}",
                "a record must be self-contained; copy the program into the folder",
            )
        if not resolved.is_file():
            raise RecordImportError(
                f"{current}: the stub runs {relative}, which does not exist",
                "is a file missing from the folder?",
            )
        target = resolved.relative_to(folder)
        current = path.parent / target  # spelled like the path given
    raise RecordImportError(f"{path}: more than {_MAX_DEPTH} stubs in a chain", "is the stub running itself?")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordImportError(
            f"cannot read the program {path}: {exc}", "is it a Python source file?"
        ) from exc


# ------------------------------------------------------------------ self-extracting programs


def _ast_payload(tree: ast.Module, filename: str) -> tuple[str, list[Layer]] | None:
    """The decoded source when the module is imports plus one ``exec`` of a decoded literal, else None."""
    aliases = import_aliases(tree.body)
    constants: dict[str, str | bytes] = {}
    execs: list[ast.Call] = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str | bytes)
        ):
            constants.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
            continue
        if isinstance(node, ast.Expr) and is_exec(node.value):
            execs.append(node.value)  # type: ignore[arg-type]
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        return None  # real code: not a wrapper
    if len(execs) != 1 or not execs[0].args:
        return None
    layers: list[Layer] = []
    try:
        value = _evaluate(execs[0].args[0], aliases, constants, layers)
    except (ValueError, binascii.Error, lzma.LZMAError, zlib.error, OSError, EOFError) as exc:
        raise RecordImportError(
            f"{filename}: the self-extracting payload does not decode: {exc}",
            "the file may be truncated or corrupted; compare its size with bytes_code in submission.json",
        ) from exc
    if value is None:
        raise RecordImportError(
            f"{filename}: execs `{ast.unparse(execs[0].args[0])[:120]}`, which cannot be read without running it",
            "only literals decoded with base64/base85 and lzma/zlib/bz2/gzip are understood",
        )
    if not layers:  # text-encoded only, or a plain string literal
        layers.append(
            Layer(codec=Codec.NONE, encoding=_encoding_of(_strip_text_calls(execs[0].args[0]), aliases))
        )
    return _text(value, filename), layers


def _strip_text_calls(node: ast.expr) -> ast.expr:
    """The expression under ``compile(...)`` and ``.decode()``, which change no bytes."""
    while isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute) and node.func.attr == "decode":
            node = node.func.value
        elif isinstance(node.func, ast.Name) and node.func.id == "compile" and node.args:
            node = node.args[0]
        else:
            break
    return node


def _evaluate(
    node: ast.expr, aliases: dict[str, str], constants: dict[str, str | bytes], layers: list[Layer]
) -> str | bytes | None:
    """Evaluate a decode chain over literals; None for anything else. Records each decompression in
    ``layers``, outermost first."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == "decode":
        return _evaluate(func.value, aliases, constants, layers)  # bytes.decode(): _text decodes UTF-8
    if not node.args:
        return None
    name = dotted(func, aliases) or ""
    if name == "compile":
        return _evaluate(node.args[0], aliases, constants, layers)
    module, _, attr = name.rpartition(".")
    if module == "base64" and attr in _DECODERS:
        inner = _evaluate(node.args[0], aliases, constants, layers)
        return None if inner is None else _DECODERS[attr][1](inner)
    if module in _CODECS and attr == "decompress":
        layer_at = len(layers)
        argument = node.args[0]
        inner = _evaluate(argument, aliases, constants, layers)
        if not isinstance(inner, bytes):
            return None
        encoding = _encoding_of(argument, aliases)
        options = _lzma_options(node, aliases) if module == "lzma" else {}
        layers.insert(layer_at, Layer(codec=_CODECS[module], encoding=encoding, **options))
        return _decompress(_CODECS[module], inner, options)
    return None


def _encoding_of(node: ast.expr, aliases: dict[str, str]) -> Encoding:
    if isinstance(node, ast.Call):
        attr = (dotted(node.func, aliases) or "").rpartition(".")[2]
        if attr in _DECODERS:
            return _DECODERS[attr][0]
    return Encoding.NONE


def _lzma_options(call: ast.Call, aliases: dict[str, str]) -> dict[str, object]:
    options: dict[str, object] = {}
    for keyword in call.keywords:
        if keyword.arg == "format":
            options["lzma_format"] = _lzma_constant(keyword.value, aliases)
        elif keyword.arg == "filters" and isinstance(keyword.value, ast.List | ast.Tuple):
            options["lzma_filters"] = tuple(_lzma_filter(f, aliases) for f in keyword.value.elts)
        else:
            raise ValueError(f"lzma.decompress keyword {keyword.arg!r} is not understood")
    return options


def _lzma_filter(node: ast.expr, aliases: dict[str, str]) -> dict[str, int]:
    if not isinstance(node, ast.Dict):
        raise ValueError("an lzma filter must be a dict literal")
    chain: dict[str, int] = {}
    for key, value in zip(node.keys, node.values, strict=True):
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            raise ValueError("lzma filter keys must be string literals")
        chain[key.value] = _lzma_constant(value, aliases)
    return chain


def _lzma_constant(node: ast.expr, aliases: dict[str, str]) -> int:
    """An int literal, ``lzma.NAME`` for a constant of the lzma module, or an ``|`` of those."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _lzma_constant(node.left, aliases) | _lzma_constant(node.right, aliases)
    module, _, attr = (dotted(node, aliases) or "").rpartition(".")
    if module == "lzma" and _LZMA_CONSTANT.fullmatch(attr):
        return int(getattr(lzma, attr))
    raise ValueError(f"`{ast.unparse(node)}` is not an lzma constant")


def _decompress(codec: Codec, data: bytes, options: dict[str, object]) -> bytes:
    if codec is Codec.LZMA:
        filters = options.get("lzma_filters")
        return lzma.decompress(
            data,
            format=options.get("lzma_format") or lzma.FORMAT_AUTO,  # type: ignore[arg-type]
            filters=list(filters) if filters else None,  # type: ignore[call-overload]
        )
    if codec is Codec.ZLIB:
        return zlib.decompress(data)
    if codec is Codec.BZ2:
        return bz2.decompress(data)
    return gzip.decompress(data)


def _text(value: str | bytes, filename: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordImportError(
            f"{filename}: the self-extracting payload decodes to bytes that are not UTF-8 text ({exc})",
            "the wrapper may run something other than Python source",
        ) from exc


# A wrapper the interpreter cannot parse: `exec(<codec>.decompress(<b64>.b85decode("...")...))` on its
# own line, aliases taken from the import lines. Payload alphabets: base85 and base64 have no quote or
# backslash, so the literal ends at the first closing quote.
_EXEC_LINE = re.compile(
    r"^exec\(\s*(?P<codec>[A-Za-z_]\w*)\.decompress\(\s*(?P<enc>[A-Za-z_]\w*)\.(?P<fn>b85decode|b64decode)"
    r"\(\s*[bB]?(?P<q>[\"'])(?P<payload>[0-9A-Za-z!#$%&()*+\-;<=>?@^_`{|}~/=]*)(?P=q)\s*\)(?P<rest>.*)$",
    re.MULTILINE,
)
_IMPORT_LINE = re.compile(r"^import\s+(.+)$", re.MULTILINE)


def _regex_payload(text: str, filename: str) -> tuple[str, Layer] | None:
    match = _EXEC_LINE.search(text)
    if match is None:
        return None
    aliases: dict[str, str] = {}
    for line in _IMPORT_LINE.findall(text):
        for part in line.split(";")[0].split(","):
            words = part.split()
            if len(words) == 3 and words[1] == "as":
                aliases[words[2]] = words[0]
            elif len(words) == 1:
                aliases[words[0]] = words[0]
    module = aliases.get(match["codec"], match["codec"])
    if module not in _CODECS or aliases.get(match["enc"], match["enc"]) != "base64":
        return None
    encoding, decoder = _DECODERS[match["fn"]]
    options: dict[str, object] = {}
    if module == "lzma" and "FORMAT_RAW" in match["rest"]:
        options = {"lzma_format": lzma.FORMAT_RAW, "lzma_filters": ({"id": lzma.FILTER_LZMA2},)}
    try:
        data = _decompress(_CODECS[module], decoder(match["payload"]), options)
    except (ValueError, binascii.Error, lzma.LZMAError, zlib.error, OSError, EOFError) as exc:
        raise RecordImportError(
            f"{filename}: the self-extracting payload does not decode: {exc}",
            "the file may be truncated or corrupted; compare its size with bytes_code in submission.json",
        ) from exc
    return _text(data, filename), Layer(codec=_CODECS[module], encoding=encoding, **options)  # type: ignore[arg-type]
