"""A record's settings, read from where challenge programs declare them: ``class Hyperparameters``.

Every record in the challenge keeps the official convention, one class attribute per environment read
with a cast and a default: ``num_layers = int(os.environ.get("NUM_LAYERS", 9))``. Each read becomes an
:class:`EnvRead` saying how the program converts the string (:class:`Cast`, so a published value can be
checked the way the program would read it) and whether its default is a constant (a knob) or computed
from other settings (``os.path.join(data_dir, ..., f"fineweb10B_sp{vocab_size}")``: fixed, derived,
never searched). Programs without the class are read for module-level reads instead. Where the file
does not parse here (3.12 f-strings under 3.11), the same reading runs statement by statement.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from importer.errors import RecordImportError
from importer.source import (
    ParseMethod,
    Statement,
    dotted,
    import_aliases,
    parse_module,
    parse_statement,
    split_statements,
)
from sandbox.knobs import Knob, KnobType, KnobValue

_CLASS_NAMES = ("Hyperparameters", "Hyperparams", "HParams")
_CLASS_HEAD = re.compile(r"class\s+(?:" + "|".join(_CLASS_NAMES) + r")\b[^:]*:")
# torchrun sets these for every process; they are never a run setting.
_LAUNCHER_NAMES = frozenset(
    {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
)
_ENV_GETTERS = ("os.environ.get", "os.getenv")
_SALVAGE = re.compile(r"(?:environ\.get|getenv|environ\[)\(?\s*([\"'])([A-Za-z_][A-Za-z0-9_]*)\1")
_MAX_POWER = 64  # constant folding of `2 ** n` stops here


class Cast(StrEnum):
    """How the program turns the environment string into a value."""

    STR = "str"
    INT = "int"
    FLOAT = "float"
    BOOL_INT = "bool(int)"  # the challenge's flag idiom: "0"/"1"
    INT_FLOAT = "int(float)"  # accepts "1e3"

    @property
    def knob_type(self) -> KnobType:
        return _KNOB_TYPES[self]

    def convert(self, value: object) -> KnobValue:
        """Apply the program's conversion to an environment string or a default; ValueError/TypeError if it fails."""
        if self is Cast.STR:
            if not isinstance(value, str):
                raise TypeError(f"{value!r} is not a string")
            return value
        if self is Cast.FLOAT:
            return float(value)  # type: ignore[arg-type]
        if self is Cast.INT_FLOAT:
            return int(float(value))  # type: ignore[arg-type]
        number = int(value)  # type: ignore[call-overload]
        return bool(number) if self is Cast.BOOL_INT else number


_KNOB_TYPES: dict[Cast, KnobType] = {
    Cast.STR: "str",
    Cast.INT: "int",
    Cast.FLOAT: "float",
    Cast.BOOL_INT: "bool",
    Cast.INT_FLOAT: "int",
}


class ReadKind(StrEnum):
    LITERAL = "literal"  # a constant default: becomes a knob
    DERIVED = "derived"  # the default is computed from other settings or calls: fixed, not searchable
    NO_DEFAULT = "no_default"  # must be set in the environment (``os.environ["X"]`` or no default given)
    LAUNCHER = "launcher"  # set by torchrun, not by whoever runs the record


class ReadLocation(StrEnum):
    CLASS = "class"  # inside class Hyperparameters
    MODULE = "module"  # module-level statements (the program has no such class)


class EnvRead(BaseModel):
    """One environment variable the program reads, as the program reads it."""

    model_config = ConfigDict(frozen=True)

    name: str
    attribute: str | None  # the class attribute (or module variable) it is assigned to
    cast: Cast
    kind: ReadKind
    default: KnobValue | None  # after the cast, as the program would hold it; None unless LITERAL
    default_text: str  # the default expression as written ("" when there is none)
    line: int
    note: str = ""

    @property
    def is_knob(self) -> bool:
        """A literal read that :class:`Knob` can hold (UPPER_CASE name, finite default)."""
        if self.kind is not ReadKind.LITERAL or not (self.name.isidentifier() and self.name.isupper()):
            return False
        return not (isinstance(self.default, float) and not math.isfinite(self.default))

    def knob(self) -> Knob:
        return Knob(name=self.name, type=self.cast.knob_type, default=self.default)  # type: ignore[arg-type]


class HyperparameterTable(BaseModel):
    """Every environment read found, in the order the program makes them, and how they were found."""

    model_config = ConfigDict(frozen=True)

    reads: tuple[EnvRead, ...]
    location: ReadLocation
    method: ParseMethod
    # "line N: ..." for statements that mention the environment but do not parse here
    unread: tuple[str, ...] = ()

    def knobs(self) -> list[Knob]:
        """The literal reads as fixed knobs (no range: ranges are a search decision, not the record's)."""
        return [read.knob() for read in self.reads if read.is_knob]

    def read(self, name: str) -> EnvRead | None:
        return next((r for r in self.reads if r.name == name), None)

    def by_attribute(self) -> dict[str, EnvRead]:
        return {r.attribute: r for r in self.reads if r.attribute}


def read_hyperparameters(source: str, *, filename: str = "<program>") -> HyperparameterTable:
    """Find the program's environment reads: ``class Hyperparameters`` first, else module level.

    Works on source this interpreter cannot parse (method TEXT). Raises :class:`RecordImportError` when
    the program reads no environment variable at all in either place.
    """
    tree = parse_module(source, filename)
    if isinstance(tree, ast.Module):
        aliases = import_aliases(ast.walk(tree))  # type: ignore[arg-type]
        cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name in _CLASS_NAMES), None)
        location = ReadLocation.CLASS if cls is not None else ReadLocation.MODULE
        body: Sequence[ast.stmt] = cls.body if cls is not None else tree.body
        reads, unread = list(_reads_in(body, aliases)), []
        method = ParseMethod.AST
    else:
        reads, unread, location = _text_reads(source)
        method = ParseMethod.TEXT
    if not reads:
        raise RecordImportError(
            f"{filename}: finds no settings: no `class Hyperparameters` and no module-level os.environ reads",
            'the importer reads settings the challenge\'s way, `int(os.environ.get("NAME", default))`',
        )
    return HyperparameterTable(reads=_merge(reads), location=location, method=method, unread=tuple(unread))


def render_knob_table(knobs: Sequence[Knob], *, others: Iterable[EnvRead] = ()) -> str:
    """A ``KNOBS = [...]`` block that :func:`sandbox.knobs.parse_knob_table` reads back as ``knobs``.

    ``others`` (derived, no-default and launcher reads) are listed as comments after the knobs, so the
    table says what it leaves out and why.
    """
    lines = ["KNOBS = ["]
    for knob in knobs:
        lines.append(f"    {_knob_call(knob)},")
    for read in others:
        default = " ".join(read.default_text.split()) or "none"
        note = f"; {read.note}" if read.note else ""
        lines.append(f"    # {read.name} ({read.cast}, {read.kind}): default {default}{note}")
    lines.append("]")
    return "\n".join(lines) + "\n"


def _knob_call(knob: Knob) -> str:
    parts = [repr(knob.name), knob.type, repr(knob.default)]
    for field in ("low", "high", "step", "choices"):
        value = getattr(knob, field)
        if value is not None:
            parts.append(f"{field}={value!r}")
    if knob.log:
        parts.append("log=True")
    if knob.help:
        parts.append(f"help={knob.help!r}")
    return f"Knob({', '.join(parts)})"


# ------------------------------------------------------------------ reads from statements


def _reads_in(statements: Iterable[ast.stmt], aliases: dict[str, str]) -> Iterator[EnvRead]:
    for statement in _flatten(statements):
        attribute = _target(statement)
        for expression in _header_expressions(statement):
            parents = {
                id(child): node for node in ast.walk(expression) for child in ast.iter_child_nodes(node)
            }
            for node in ast.walk(expression):
                read = _env_read(node, parents, aliases, attribute)
                if read is not None:
                    yield read


def _flatten(statements: Iterable[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements and those nested in if/for/while/with/try blocks, never inside functions or classes."""
    for statement in statements:
        yield statement
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        for field in ("body", "orelse", "finalbody"):
            yield from _flatten(getattr(statement, field, []))
        for handler in getattr(statement, "handlers", []):
            yield from _flatten(handler.body)


def _header_expressions(statement: ast.stmt) -> list[ast.expr]:
    """The expressions a statement evaluates itself (not those of the blocks under it)."""
    if isinstance(statement, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.Expr):
        return [statement.value] if statement.value is not None else []
    if isinstance(statement, ast.If | ast.While):
        return [statement.test]
    if isinstance(statement, ast.For):
        return [statement.iter]
    if isinstance(statement, ast.With):
        return [item.context_expr for item in statement.items]
    return []


def _target(statement: ast.stmt) -> str | None:
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
    elif isinstance(statement, ast.AnnAssign):
        target = statement.target
    else:
        return None
    return target.id if isinstance(target, ast.Name) else None


def _env_read(
    node: ast.AST, parents: dict[int, ast.AST], aliases: dict[str, str], attribute: str | None
) -> EnvRead | None:
    """The read at ``node`` when it is ``os.environ.get``/``os.getenv``/``os.environ[...]`` of a literal name."""
    default: ast.expr | None = None
    if isinstance(node, ast.Call) and dotted(node.func, aliases) in _ENV_GETTERS and node.args:
        name_node = node.args[0]
        if len(node.args) > 1:
            default = node.args[1]
        default = next((k.value for k in node.keywords if k.arg == "default"), default)
    elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
        if dotted(node.value, aliases) != "os.environ":
            return None
        name_node = node.slice
    else:
        return None
    if not (isinstance(name_node, ast.Constant) and isinstance(name_node.value, str)):
        return None
    name = name_node.value
    cast = _cast(node, parents)
    fields = {"name": name, "attribute": attribute, "cast": cast, "line": node.lineno}  # type: ignore[attr-defined]
    text = ast.unparse(default) if default is not None else ""
    if name in _LAUNCHER_NAMES:
        return EnvRead(kind=ReadKind.LAUNCHER, default=None, default_text=text, **fields)  # type: ignore[arg-type]
    if default is None or (isinstance(default, ast.Constant) and default.value is None):
        return EnvRead(kind=ReadKind.NO_DEFAULT, default=None, default_text=text, **fields)  # type: ignore[arg-type]
    folded = _fold(default)
    if folded is None:
        return EnvRead(kind=ReadKind.DERIVED, default=None, default_text=text, **fields)  # type: ignore[arg-type]
    try:
        value = cast.convert(folded)
    except (ValueError, TypeError, OverflowError):
        note = f"the default {text} does not convert with {cast}"
        return EnvRead(kind=ReadKind.DERIVED, default=None, default_text=text, note=note, **fields)  # type: ignore[arg-type]
    return EnvRead(kind=ReadKind.LITERAL, default=value, default_text=text, **fields)  # type: ignore[arg-type]


def _cast(node: ast.AST, parents: dict[int, ast.AST]) -> Cast:
    """The conversion wrapped directly around the read; a read used any other way is a string."""
    outer = _single_call_parent(node, parents)
    if outer == "float":
        return Cast.INT_FLOAT if _single_call_parent(parents[id(node)], parents) == "int" else Cast.FLOAT
    if outer == "int":
        return Cast.BOOL_INT if _single_call_parent(parents[id(node)], parents) == "bool" else Cast.INT
    return Cast.STR


def _single_call_parent(node: ast.AST, parents: dict[int, ast.AST]) -> str | None:
    parent = parents.get(id(node))
    if (
        isinstance(parent, ast.Call)
        and isinstance(parent.func, ast.Name)
        and parent.func.id in ("int", "float", "bool", "str")
        and len(parent.args) == 1
        and parent.args[0] is node
        and not parent.keywords
    ):
        return parent.func.id
    return None


def _fold(node: ast.expr) -> KnobValue | None:
    """A literal, or arithmetic over numeric literals (``2048 * 48 * 8``); None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _fold(node.operand)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
        return None
    if not isinstance(node, ast.BinOp):
        return None
    left, right = _fold(node.left), _fold(node.right)
    if isinstance(left, str) and isinstance(right, str) and isinstance(node.op, ast.Add):
        return left + right
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
    if not numbers:
        return None
    if isinstance(node.op, ast.Pow) and abs(right) > _MAX_POWER:  # type: ignore[arg-type]
        return None
    operations: dict[type, Callable[[float, float], float]] = {
        ast.Add: lambda a, b: a + b,
        ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b,
        ast.FloorDiv: lambda a, b: a // b,
        ast.Mod: lambda a, b: a % b,
        ast.Pow: lambda a, b: a**b,
    }
    operation = operations.get(type(node.op))
    try:
        return None if operation is None else operation(left, right)  # type: ignore[arg-type,return-value]
    except (ZeroDivisionError, OverflowError):
        return None


def _merge(reads: list[EnvRead]) -> tuple[EnvRead, ...]:
    """One entry per name, first read first; a name read with different defaults becomes derived."""
    groups: dict[str, list[EnvRead]] = {}
    for read in reads:
        groups.setdefault(read.name, []).append(read)
    merged: list[EnvRead] = []
    for name, group in groups.items():
        first = group[0]
        if all((r.cast, r.kind, r.default) == (first.cast, first.kind, first.default) for r in group):
            merged.append(first)
            continue
        lines = ", ".join(str(r.line) for r in group)
        texts = " | ".join(dict.fromkeys(r.default_text or "none" for r in group))
        kind = ReadKind.LAUNCHER if name in _LAUNCHER_NAMES else ReadKind.DERIVED
        note = f"read {len(group)} times with different defaults (lines {lines})"
        merged.append(
            first.model_copy(update={"kind": kind, "default": None, "default_text": texts, "note": note})
        )
    return tuple(merged)


# ------------------------------------------------------------------ source ast cannot parse


def _text_reads(source: str) -> tuple[list[EnvRead], list[str], ReadLocation]:
    """The same reading, one statement at a time; statements that still fail are salvaged by regex."""
    statements = split_statements(source)
    body, location = _class_body(statements), ReadLocation.CLASS
    if not body:
        body, location = [s for s in statements if s.indent == 0], ReadLocation.MODULE
    trees = [parse_statement(s) for s in statements]
    aliases = import_aliases(n for t in trees if t is not None for n in t.body)
    reads: list[EnvRead] = []
    unread: list[str] = []
    for statement in body:
        tree = parse_statement(statement)
        if tree is not None:
            reads.extend(_reads_in(tree.body, aliases))
            continue
        found = _SALVAGE.findall(statement.text)
        if not found:
            continue
        unread.append(f"line {statement.line}: {statement.text[:80]}")
        for _, name in found:
            kind = ReadKind.LAUNCHER if name in _LAUNCHER_NAMES else ReadKind.DERIVED
            reads.append(
                EnvRead(
                    name=name,
                    attribute=None,
                    cast=Cast.STR,
                    kind=kind,
                    default=None,
                    default_text="",
                    line=statement.line,
                    note="its statement does not parse here; cast and default unknown",
                )
            )
    return reads, unread, location


def _class_body(statements: list[Statement]) -> list[Statement]:
    """The statements of ``class Hyperparameters``, including a one-line ``class H:a=1;b=2`` suite."""
    for index, statement in enumerate(statements):
        head = _CLASS_HEAD.match(statement.text)
        if head is None:
            continue
        body: list[Statement] = []
        rest = statement.text[head.end() :].strip()
        if rest:  # the suite is on the header's line, `;`-separated
            body.append(Statement(line=statement.line, indent=statement.indent + head.end(), text=rest))
            for later in statements[index + 1 :]:
                if not later.after_semicolon:
                    break
                body.append(later)
            return body
        for later in statements[index + 1 :]:
            if later.indent <= statement.indent:
                break
            body.append(later)
        return body
    return []
