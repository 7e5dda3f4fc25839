"""Static checks of a changed program for what compiles and parses but is not worth a run.

* :func:`same_code`: two sources are one program once comments, docstrings and layout are gone;
* :func:`table_mutations`: statements that change the module-level ``KNOBS`` after its literal, so the
  static table (what the tuner searches) is not the table the program runs with;
* :func:`unread_knobs`: knobs the table declares but the program never reads;
* :func:`reading_style`: how a program reads its knobs, in words for the model.

Everything here reads source with :mod:`ast`; nothing imports or runs candidate code, and nothing
imports the sandbox (whose knob parser and preflight check the same program for the harness).
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

TABLE = "KNOBS"

# Settings the harness passes to every run (docs/contract.md: DATA_PATH and TOKENIZER_PATH point each
# phase at its data, SEED is the run's seed, EVAL_SEQ_LEN the harness's eval length). A program declares
# them to honour the contract even where it has no use for one (a deterministic or tokenizer-free
# trainer), so declaring one is never a dead setting of the program's own.
CONTRACT_SETTINGS = frozenset({"DATA_PATH", "TOKENIZER_PATH", "SEED", "EVAL_SEQ_LEN"})

# List methods that change a list in place.
_LIST_MUTATORS = frozenset(
    {"append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse", "__setitem__", "__iadd__"}
)


def same_code(source: str, parent_source: str) -> bool:
    """True when both parse to the same tree once docstrings and other bare string statements are
    dropped (comments and layout never reach the tree). False when either does not parse."""
    try:
        return _code_dump(source) == _code_dump(parent_source)
    except (SyntaxError, ValueError):
        return False


def _code_dump(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                kept = [stmt for stmt in body if not is_string_statement(stmt)]
                setattr(node, field, kept or [ast.Pass()])
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def is_string_statement(stmt: ast.stmt) -> bool:
    """A docstring, or any other bare string literal used as a statement (it computes nothing)."""
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def table_statement(tree: ast.Module) -> ast.Assign | ast.AnnAssign | None:
    """The first module-level assignment to ``KNOBS`` (the table), or None."""
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
        if isinstance(stmt, ast.Assign | ast.AnnAssign) and any(_is_table_name(t) for t in targets):
            return stmt
    return None


def declared_knobs(source: str) -> tuple[str, ...]:
    """The names of the ``Knob("NAME", ...)`` entries of the table literal, in order; empty when the
    source does not parse or has no literal table (the caller's own parser reports those)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ()
    table = table_statement(tree)
    if table is None or not isinstance(table.value, ast.List | ast.Tuple):
        return ()
    names = []
    for entry in table.value.elts:
        name = entry.args[0] if isinstance(entry, ast.Call) and entry.args else None
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            names.append(name.value)
    return tuple(names)


def table_mutations(source: str) -> list[str]:
    """Each statement that changes the module-level ``KNOBS`` after its table literal, as
    ``"line N: <code>"``: ``KNOBS.append/extend/insert/...(...)``, ``KNOBS += ...``, ``KNOBS[i] = ...``,
    ``del KNOBS[i]``, and any further assignment to ``KNOBS`` (a second table, ``KNOBS = KNOBS + [...]``,
    one under ``global KNOBS`` in a function). A function's own local ``KNOBS`` is not the table."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    table = table_statement(tree)
    found: list[ast.AST] = []
    _scan_scope(tree.body, is_table=True, table=table, found=found)
    lines = source.splitlines()
    return [f"line {node.lineno}: {_snippet(node, lines)}" for node in sorted(found, key=_position)]


def _scan_scope(
    body: list[ast.stmt], *, is_table: bool, table: ast.stmt | None, found: list[ast.AST]
) -> None:
    """Record the table's mutations in one scope's statements; nested functions and classes are scopes
    of their own, where ``KNOBS`` is the table unless they bind it without ``global``."""
    for node in _own_nodes(body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            inner = node.body if isinstance(node.body, list) else [ast.Expr(node.body)]
            declared_global = any(isinstance(n, ast.Global) and TABLE in n.names for n in _own_nodes(inner))
            binds = _binds_table(node) or any(_binds_table(n) for n in _own_nodes(inner))
            local = binds and not declared_global
            _scan_scope(inner, is_table=is_table and not local, table=table, found=found)
            continue
        if not is_table or node is table:
            continue
        if _mutates_table(node):
            found.append(node)


def _own_nodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every node of ``body``, not descending into nested functions, lambdas or classes (those are
    yielded themselves, once)."""
    stack: list[ast.AST] = list(reversed(body))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            # decorators, defaults and bases belong to the enclosing scope
            outer = [*getattr(node, "decorator_list", ()), *getattr(node, "bases", ())]
            if not isinstance(node, ast.ClassDef):
                outer += [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
            stack.extend(reversed(outer))
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _binds_table(node: ast.AST) -> bool:
    if isinstance(node, ast.Name) and node.id == TABLE and isinstance(node.ctx, ast.Store | ast.Del):
        return True
    if isinstance(node, ast.arg) and node.arg == TABLE:
        return True
    if isinstance(node, ast.alias) and (node.asname or node.name) == TABLE:
        return True
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        args = node.args
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        return any(a is not None and a.arg == TABLE for a in every)
    return False


def _mutates_table(node: ast.AST) -> bool:
    if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.Delete | ast.For | ast.With):
        return any(_binds_table(n) or _is_table_item(n) for n in ast.walk(node) if _is_target_of(n, node))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return _is_table_name(node.func.value) and node.func.attr in _LIST_MUTATORS
    if isinstance(node, ast.NamedExpr):
        return _is_table_name(node.target)
    return False


def _is_target_of(node: ast.AST, stmt: ast.AST) -> bool:
    if isinstance(stmt, ast.Assign):
        targets: list[ast.AST] = list(stmt.targets)
    elif isinstance(stmt, ast.Delete):
        targets = list(stmt.targets)
    elif isinstance(stmt, ast.With):
        targets = [item.optional_vars for item in stmt.items if item.optional_vars is not None]
    else:
        targets = [stmt.target]  # type: ignore[attr-defined]
    return any(node is n for target in targets for n in ast.walk(target))


def _is_table_item(node: ast.AST) -> bool:
    return isinstance(node, ast.Subscript) and _is_table_name(node.value)


def _is_table_name(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Name) and node.id == TABLE


def _position(node: ast.AST) -> tuple[int, int]:
    return (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))


def _snippet(node: ast.AST, lines: list[str], limit: int = 80) -> str:
    line = lines[node.lineno - 1].strip() if 0 < node.lineno <= len(lines) else ast.unparse(node)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def unread_knobs(names: Iterable[str], sources: Iterable[str]) -> list[str]:
    """The knobs among ``names`` that none of ``sources`` reads (the entry first, with its table).

    A knob counts as read when, outside the table and docstrings, its name appears as a string literal
    (``cfg["NAME"]``, ``os.environ.get("NAME")``, a list of names looked up with ``getattr``) or as an
    attribute (``cfg.name`` or ``cfg.NAME``), in either its own spelling or lower case; or when it is one of
    :data:`CONTRACT_SETTINGS`. Sources that do not parse read nothing.
    """
    wanted = [name for name in names if name not in CONTRACT_SETTINGS]
    seen: set[str] = set()
    for source in sources:
        seen |= _words(source)
    return [name for name in wanted if name not in seen and name.lower() not in seen]


def _words(source: str) -> set[str]:
    """String literals and attribute names outside the knob table and docstrings."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    table = table_statement(tree)
    words: set[str] = set()
    for node in _walk_skipping(tree, table):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            words.add(node.value)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
    return words


def _walk_skipping(tree: ast.AST, table: ast.AST | None) -> Iterator[ast.AST]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if node is table or (isinstance(node, ast.stmt) and is_string_statement(node)):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


@dataclass(frozen=True)
class ReadingStyle:
    """How a program reads its knobs: ``kind`` is lower (``cfg.name``), upper (``cfg.NAME``), subscript
    (``cfg["NAME"]``) or environ (``os.environ.get("NAME")``); ``example`` is one knob read that way."""

    kind: str
    holder: str
    example: str

    def expression(self, name: str) -> str:
        """How this program would read knob ``name``."""
        if self.kind == "lower":
            return f"{self.holder}.{name.lower()}"
        if self.kind == "upper":
            return f"{self.holder}.{name}"
        if self.kind == "environ":
            return f'os.environ.get("{name}", ...)'
        return f'{self.holder}["{name}"]'

    def describe(self) -> str:
        """One sentence for the model, e.g. "This program reads each knob as an attribute of `cfg` under
        its lower-case name (NUM_LAYERS is `cfg.num_layers`)"."""
        how = {
            "lower": f"as an attribute of `{self.holder}` under its lower-case name",
            "upper": f"as an attribute of `{self.holder}`",
            "environ": "from the environment by name",
            "subscript": f"by name from `{self.holder}`",
        }[self.kind]
        return f"This program reads each knob {how} ({self.example} is `{self.expression(self.example)}`)"


def reading_style(source: str, names: Iterable[str]) -> ReadingStyle | None:
    """The commonest way ``source`` reads its knobs ``names`` among those :func:`unread_knobs`
    recognises; None when it reads none of them in such a way."""
    names = tuple(names)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    known = {name for name in names if name not in CONTRACT_SETTINGS} or set(names)
    lower = {name.lower(): name for name in known}
    styles: Counter[tuple[str, str]] = Counter()
    read: dict[tuple[str, str], set[str]] = {}
    for node in _walk_skipping(tree, table_statement(tree)):
        style = _style_of(node, known, lower)
        if style is not None:
            key, name = style
            styles[key] += 1
            read.setdefault(key, set()).add(name)
    if not styles:
        return None
    (kind, holder), _ = styles.most_common(1)[0]
    example = next(n for n in names if n in read[(kind, holder)])  # the first in table order
    return ReadingStyle(kind, holder, example)


def _style_of(node: ast.AST, known: set[str], lower: dict[str, str]) -> tuple[tuple[str, str], str] | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        if node.attr in lower:
            return ("lower", node.value.id), lower[node.attr]
        if node.attr in known:
            return ("upper", node.value.id), node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        key = node.slice
        if isinstance(key, ast.Constant) and key.value in known:
            return ("subscript", node.value.id), str(key.value)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
        holder, key = node.func.value, node.args[0]
        is_environ = isinstance(holder, ast.Attribute) and holder.attr == "environ"
        if is_environ and node.func.attr == "get" and isinstance(key, ast.Constant) and key.value in known:
            return ("environ", "os.environ"), str(key.value)
    return None
