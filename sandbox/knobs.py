"""Static reading of a program's knob table.

A program declares every setting once, in a module-level table::

    KNOBS = [
        Knob("NUM_LAYERS", int, 9, low=2, high=16),
        Knob("MATRIX_LR", float, 0.04, low=0.005, high=0.2, log=True),
        Knob("COMPRESSOR", str, "auto", choices=("auto", "zlib", "zstd", "lzma", "brotli")),
        Knob("DATA_PATH", str, "./data/datasets/fineweb10B_sp1024"),   # fixed: no range, no choices
    ]

Only literals are allowed in the table, so it can be read with :mod:`ast` without importing (and so
without running) candidate code. A knob with a range or choices is *searchable*; one without is a
fixed setting that can still be overridden through the environment.
"""

from __future__ import annotations

import ast
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

KnobType = Literal["int", "float", "str", "bool"]
KnobValue = int | float | str | bool

_TYPE_NAMES: dict[str, KnobType] = {"int": "int", "float": "float", "str": "str", "bool": "bool"}
_KEYWORDS = {"low", "high", "log", "choices", "step", "help"}


class KnobTableError(ValueError):
    """The knob table is missing or malformed; the message names the knob and the problem."""


class Knob(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    type: KnobType
    default: KnobValue
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[KnobValue, ...] | None = None
    help: str = ""

    @model_validator(mode="after")
    def _check(self) -> Knob:
        if not self.name.isidentifier() or self.name.upper() != self.name:
            raise ValueError(f"knob name {self.name!r} must be an UPPER_CASE identifier")
        if self.choices is not None and (self.low is not None or self.high is not None):
            raise ValueError(f"knob {self.name}: give either low/high or choices, not both")
        if (self.low is None) != (self.high is None):
            raise ValueError(f"knob {self.name}: low and high must be given together")
        if self.low is not None and self.high is not None:
            if self.type not in ("int", "float"):
                raise ValueError(f"knob {self.name}: a range needs type int or float, not {self.type}")
            if not self.low <= self.high:
                raise ValueError(f"knob {self.name}: low {self.low} is above high {self.high}")
            if self.log and self.low <= 0:
                raise ValueError(f"knob {self.name}: a log-scale range must be positive (low={self.low})")
        if self.choices is not None and len(self.choices) == 0:
            raise ValueError(f"knob {self.name}: choices is empty")
        if not _fits_type(self.default, self.type):
            raise ValueError(f"knob {self.name}: default {self.default!r} is not of type {self.type}")
        return self

    @property
    def searchable(self) -> bool:
        return self.choices is not None or self.low is not None

    def parse(self, text: str) -> KnobValue:
        """Convert an environment-variable string to this knob's type (as the trainer does)."""
        if self.type == "bool":
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"knob {self.name}: {text!r} is not a boolean")
        if self.type == "int":
            return int(float(text)) if "e" in text.lower() else int(text)
        if self.type == "float":
            return float(text)
        return text

    def render(self, value: KnobValue) -> str:
        """Format a value for the environment so that :meth:`parse` reads it back unchanged."""
        if self.type == "bool":
            return "1" if value else "0"
        if self.type == "float":
            return repr(float(value))
        return str(value)


def _fits_type(value: object, type_name: KnobType) -> bool:
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _table_literal(source: str, filename: str) -> ast.List | ast.Tuple:
    """The list literal assigned to the one module-level ``KNOBS``; KnobTableError otherwise."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise KnobTableError(f"{filename}:{exc.lineno}: syntax error: {exc.msg}") from exc
    tables = [
        node
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "KNOBS" for t in node.targets)
        or isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.target.id == "KNOBS"
    ]
    if not tables:
        raise KnobTableError(f"{filename}: no module-level `KNOBS = [...]` table found")
    if len(tables) > 1:
        lines = ", ".join(str(t.lineno) for t in tables)
        raise KnobTableError(f"{filename}: KNOBS is assigned more than once (lines {lines}); keep one table")
    value = tables[0].value
    if not isinstance(value, ast.List | ast.Tuple):
        raise KnobTableError(
            f"{filename}:{tables[0].lineno}: KNOBS must be a list literal of Knob(...) calls"
        )
    return value


def parse_knob_table(source: str, *, filename: str = "<program>") -> list[Knob]:
    """Read the ``KNOBS = [...]`` table from program source without importing it.

    Returns the knobs in declaration order. Raises :class:`KnobTableError` naming the line and the
    problem when the source does not parse, has no table, has two, or holds a non-literal entry.
    """
    return _parse_table(_table_literal(source, filename), filename)


def _parse_table(table: ast.List | ast.Tuple, filename: str) -> list[Knob]:
    knobs: list[Knob] = []
    seen: set[str] = set()
    for entry in table.elts:
        knob = _parse_entry(entry, filename)
        if knob.name in seen:
            raise KnobTableError(f"{filename}:{entry.lineno}: knob {knob.name} is declared twice")
        seen.add(knob.name)
        knobs.append(knob)
    return knobs


def _parse_entry(entry: ast.expr, filename: str) -> Knob:
    where = f"{filename}:{entry.lineno}"
    if not (isinstance(entry, ast.Call) and isinstance(entry.func, ast.Name) and entry.func.id == "Knob"):
        raise KnobTableError(f"{where}: every KNOBS entry must be a call Knob(NAME, type, default, ...)")
    if len(entry.args) != 3:
        raise KnobTableError(f"{where}: Knob takes exactly three positional arguments (name, type, default)")
    name_node, type_node, default_node = entry.args
    name = _literal(name_node, where, "name")
    if not isinstance(name, str):
        raise KnobTableError(f"{where}: the knob name must be a string literal")
    where = f"{where} ({name})"
    if not (isinstance(type_node, ast.Name) and type_node.id in _TYPE_NAMES):
        raise KnobTableError(f"{where}: the type must be one of int, float, str, bool")
    fields: dict[str, object] = {
        "name": name,
        "type": _TYPE_NAMES[type_node.id],
        "default": _literal(default_node, where, "default"),
    }
    for keyword in entry.keywords:
        if keyword.arg not in _KEYWORDS:
            raise KnobTableError(f"{where}: unknown keyword {keyword.arg!r}; allowed: {sorted(_KEYWORDS)}")
        fields[keyword.arg] = _literal(keyword.value, where, keyword.arg)
    if (
        fields["type"] == "float"
        and isinstance(fields["default"], int)
        and not isinstance(fields["default"], bool)
    ):
        fields["default"] = float(fields["default"])
    try:
        return Knob.model_validate(fields)
    except ValueError as exc:
        raise KnobTableError(f"{where}: {_first_error(exc)}") from exc


def _literal(node: ast.expr, where: str, what: str) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError as exc:
        raise KnobTableError(f"{where}: {what} must be a literal, not {ast.unparse(node)!r}") from exc


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        msg = str(first.get("msg", exc)).removeprefix("Value error, ")
        return f"{loc}: {msg}" if loc else msg
    return str(exc)


def rewrite_knob_defaults(source: str, values: dict[str, KnobValue], *, filename: str = "<program>") -> str:
    """Return ``source`` with the defaults of the named knobs replaced by ``values``.

    Used to bake a trial's knob values into its committed program, so that every candidate branch runs
    as it was scored with no environment at all (the challenge runs ``train_gpt.py`` with its defaults).
    Only the default literal changes; comments and layout stay. Raises :class:`KnobTableError` for a name
    that is not in the table or a value of the wrong type.
    """
    table = _table_literal(source, filename)
    knobs = _parse_table(table, filename)  # one knob per entry, in order: every entry is a Knob(...) call
    replacements: list[tuple[ast.expr, str]] = []
    for entry, knob in zip(table.elts, knobs, strict=True):
        if knob.name not in values:
            continue
        value = values[knob.name]
        if knob.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not _fits_type(value, knob.type):
            raise KnobTableError(
                f"{filename}: value {value!r} for knob {knob.name} is not of type {knob.type}"
            )
        replacements.append((entry.args[2], repr(value)))  # type: ignore[attr-defined]
    unknown = sorted(set(values) - {k.name for k in knobs})
    if unknown:
        raise KnobTableError(f"{filename}: no knob named {', '.join(unknown)} in the table")
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line.encode("utf-8")))
    data = source.encode("utf-8")
    # Replace from the end so earlier byte offsets stay valid.
    for node, text in sorted(replacements, key=lambda r: (r[0].lineno, r[0].col_offset), reverse=True):
        start = offsets[node.lineno - 1] + node.col_offset
        end = offsets[node.end_lineno - 1] + node.end_col_offset  # type: ignore[operator]
        data = data[:start] + text.encode("utf-8") + data[end:]
    return data.decode("utf-8")
