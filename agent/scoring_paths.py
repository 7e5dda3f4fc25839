"""Which parts of a program decide what it writes to the scored files, and whether an edit touches them.

The harness scores a run from ``val_nll.f32`` and checks ``check_rows.f32`` and ``result.json``
(docs/contract.md). An edit there may be honest (a new eval method) or game the score (clamping the NLL,
dropping positions, rewriting a field), so the agent names it on the proposal (``scoring_change``) and
the controller runs it with the full integrity probe. The rule is static, to be explained, not clever:

* a *write* is a statement that names a scored file (a string literal ending in the file's name, or a
  module-level constant holding one) or that uses a variable such a statement binds (the path, the
  opened file);
* in the function holding the write (or the module's own code), its *sources* are the statements
  before it, or in a loop around it, that bind or update a name the write uses, followed back
  transitively, with the ``if``/``for``/``while``/``with`` headers around them, and the signature when a
  parameter is used; a call statement counts as updating its object and its plain-name arguments;
* for ``val_nll.f32`` and ``check_rows.f32``, the scored numbers, the whole bodies of the program's
  module-level functions that the write or its sources name count too, and of the functions those
  name in turn (the eval path: ``evaluate``, ``plan_windows``, the artifact loader). Methods and classes
  are not followed, so the model itself (``MLP.forward``) is not on it; for ``result.json`` only the
  functions the writing statement itself calls are (``write_json``);
* an edit is a scoring change when a changed line of code (not blank, not only a comment) of the parent
  or of the child falls on one of those statements or functions.

What a function returns is followed only where the writing function uses it: a change to a field of
the dict ``run_eval`` returns, which ``main`` writes to result.json, is not seen.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from agent.program_checks import is_string_statement

SCORED_FILES = ("val_nll.f32", "check_rows.f32", "result.json")
SCORED_NUMBERS = frozenset({"val_nll.f32", "check_rows.f32"})  # files whose eval path is followed

_COMPOUND = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try, ast.Match)
_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
MODULE = "the module-level code"


def _display(name: str) -> str:
    return name if name == MODULE else f"`{name}`"


@dataclass(frozen=True)
class ScoringPart:
    """A function (or the module's own code) and the lines of it that decide a scored file."""

    name: str  # "`evaluate`", "`Evaluator.write`" or "the module-level code"
    role: str  # "which writes val_nll.f32", "on the path to val_nll.f32 (written by `run_eval`)"
    lines: frozenset[int]  # 1-based


def scoring_change(parent_source: str, source: str) -> str:
    """Why the edit from ``parent_source`` to ``source`` changes what the program writes to a scored
    file, e.g. "edits `evaluate`, which writes val_nll.f32: lines 140-141"; empty when it does not (or
    when neither side parses)."""
    parent_changed, child_changed = changed_code_lines(parent_source, source)
    found: dict[str, tuple[str, str]] = {}
    for side, changed, label in (
        (source, child_changed, "lines"),
        (parent_source, parent_changed, "parent lines"),
    ):
        for part in scoring_parts(side):
            touched = part.lines & changed
            if touched and part.name not in found:
                found[part.name] = (part.role, f"{label} {_ranges(touched)}")
    return "; ".join(f"edits {name}, {role}: {where}" for name, (role, where) in found.items())


def changed_code_lines(old: str, new: str) -> tuple[frozenset[int], frozenset[int]]:
    """1-based numbers of the lines of ``old`` and of ``new`` a line diff changes, leaving out blank and
    comment-only lines."""
    a, b = old.splitlines(), new.splitlines()
    removed: set[int] = set()
    added: set[int] = set()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            removed.update(n for n in range(i1 + 1, i2 + 1) if _is_code(a[n - 1]))
            added.update(n for n in range(j1 + 1, j2 + 1) if _is_code(b[n - 1]))
    return frozenset(removed), frozenset(added)


def _is_code(line: str) -> bool:
    text = line.strip()
    return bool(text) and not text.startswith("#")


def _ranges(lines: frozenset[int]) -> str:
    spans: list[list[int]] = []
    for n in sorted(lines):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def scoring_parts(source: str) -> list[ScoringPart]:
    """The writers of the scored files in ``source``, then the functions on their eval path."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    functions = {s.name: s for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)}
    imports = {
        (alias.asname or alias.name).split(".")[0]
        for stmt in tree.body
        if isinstance(stmt, ast.Import | ast.ImportFrom)
        for alias in stmt.names
    }
    writers: dict[str, tuple[list[str], set[int]]] = {}
    path: dict[str, tuple[set[str], set[str]]] = {}  # eval-path function -> (writers it serves, files)
    constants = {file: _constants_naming(tree, file) for file in SCORED_FILES}
    every_constant = set().union(*constants.values())
    for name, scope in _scopes(tree):
        own = _statements(scope.body, imports)
        if not any(st.files or st.loads & every_constant for st in own):
            continue  # the common case: the scope names no scored file
        for file in SCORED_FILES:
            found = _slice(scope, own, file, constants[file])
            if found is None:
                continue
            lines, named = found
            files, all_lines = writers.setdefault(name, ([], set()))
            files.append(file)
            all_lines |= lines
            for callee in sorted(named & functions.keys()):
                _follow(callee, name, file, functions, path)
    parts = [
        ScoringPart(_display(name), f"which writes {_in_order(files)}", frozenset(lines))
        for name, (files, lines) in writers.items()
    ]
    for name, (served, files) in path.items():
        if name in writers:
            continue
        by = " and ".join(_display(w) for w in writers if w in served)
        role = f"on the path to {_in_order(files)} (written by {by})"
        parts.append(ScoringPart(_display(name), role, frozenset(_function_lines(functions[name]))))
    return parts


def _in_order(files: Iterable[str]) -> str:
    return ", ".join(f for f in SCORED_FILES if f in set(files))


def _follow(
    start: str,
    writer: str,
    file: str,
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef],
    path: dict[str, tuple[set[str], set[str]]],
) -> None:
    """Add ``start`` and the module functions it names, transitively, to ``path``."""
    queue = [start]
    while queue:
        name = queue.pop()
        served, files = path.setdefault(name, (set(), set()))
        if writer in served and file in files:
            continue
        served.add(writer)
        files.add(file)
        named = {n.id for n in ast.walk(functions[name]) if isinstance(n, ast.Name)}
        queue.extend(sorted(named & functions.keys()))


def _function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[int]:
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    lines = set(range(first, node.end_lineno + 1))  # type: ignore[operator]
    for inner in ast.walk(node):
        if isinstance(inner, ast.stmt) and is_string_statement(inner):
            lines -= set(range(inner.lineno, inner.end_lineno + 1))  # type: ignore[operator]
    return lines


def _scopes(tree: ast.Module) -> Iterator[tuple[str, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef]]:
    """The module, then every function and method anywhere, with a qualified name."""
    yield MODULE, tree

    def walk(
        body: list[ast.stmt], prefix: str
    ) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{node.name}"
                yield name, node
                yield from walk(node.body, f"{name}.")
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, _COMPOUND):
                for block in _blocks(node):
                    yield from walk(block, prefix)

    yield from walk(tree.body, "")


def _blocks(node: ast.stmt) -> list[list[ast.stmt]]:
    if isinstance(node, ast.Match):
        return [case.body for case in node.cases]
    blocks = [getattr(node, field, []) for field in ("body", "orelse", "finalbody")]
    blocks += [handler.body for handler in getattr(node, "handlers", [])]
    return blocks


def _own_statements(
    body: list[ast.stmt], around: tuple[ast.stmt, ...] = ()
) -> Iterator[tuple[ast.stmt, tuple]]:
    """Each statement of one scope with the compound statements around it, not entering nested
    functions or classes (they are scopes of their own) and leaving out bare strings (docstrings)."""
    for stmt in body:
        if isinstance(stmt, _DEFS) or is_string_statement(stmt):
            continue
        yield stmt, around
        if isinstance(stmt, _COMPOUND):
            for block in _blocks(stmt):
                yield from _own_statements(block, (*around, stmt))


def _head(stmt: ast.stmt) -> list[ast.AST]:
    """What a statement itself evaluates: a simple statement whole, a compound statement's header."""
    if isinstance(stmt, ast.If | ast.While):
        return [stmt.test]
    if isinstance(stmt, ast.For | ast.AsyncFor):
        return [stmt.target, stmt.iter]
    if isinstance(stmt, ast.With | ast.AsyncWith):
        return [part for item in stmt.items for part in (item.context_expr, item.optional_vars) if part]
    if isinstance(stmt, ast.Match):
        return [stmt.subject]
    if isinstance(stmt, ast.Try):
        return []
    return [stmt]


def _head_lines(stmt: ast.stmt) -> set[int]:
    parts = _head(stmt)
    last = max([stmt.lineno, *(p.end_lineno or p.lineno for p in parts)])  # type: ignore[attr-defined]
    return set(range(stmt.lineno, last + 1))


def _names(parts: list[ast.AST], *contexts: type) -> set[str]:
    return {
        n.id
        for part in parts
        for n in ast.walk(part)
        if isinstance(n, ast.Name) and isinstance(n.ctx, contexts)
    }


def _base_name(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _defines(stmt: ast.stmt, imports: set[str], stores: set[str]) -> set[str]:
    """Names a statement binds (``stores``) or may update: the base name of ``x[i] = ...`` and
    ``x.a = ...``, and for a call statement its object and plain-name arguments
    (``summary.update(...)``, ``all_reduce_(rt, nll)``), imported modules aside."""
    names = set(stores)
    for target in _targets(stmt):
        for node in ast.walk(target):
            if isinstance(node, ast.Subscript | ast.Attribute):
                base = _base_name(node)
                if base is not None:
                    names.add(base)
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        call = stmt.value
        if isinstance(call.func, ast.Attribute):
            names.add(_base_name(call.func) or "")
        names.update(a.id for a in [*call.args, *(k.value for k in call.keywords)] if isinstance(a, ast.Name))
    return names - imports - {""}


def _file_name(text: str) -> str:
    return text.replace("\\", "/").split("/")[-1]


def _constants_naming(tree: ast.Module, file: str) -> set[str]:
    """Module-level names assigned a value that names ``file`` (``NLL_FILE = "val_nll.f32"``)."""
    names: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is not None:
            strings = [n.value for n in ast.walk(stmt.value) if isinstance(n, ast.Constant)]
            if any(isinstance(text, str) and _file_name(text) == file for text in strings):
                names |= _names([stmt], ast.Store)
    return names


@dataclass(frozen=True, eq=False)
class _Statement:
    """One statement of a scope, read once: what its own part (see :func:`_head`) loads, stores, may
    update and which scored files it names."""

    node: ast.stmt
    around: tuple[ast.stmt, ...]  # the compound statements it sits in, outermost first
    loads: frozenset[str]
    stores: frozenset[str]
    defines: frozenset[str]
    files: frozenset[str]


def _statements(body: list[ast.stmt], imports: set[str]) -> list[_Statement]:
    read = []
    for stmt, around in _own_statements(body):
        loads: set[str] = set()
        local: set[str] = set()  # comprehension variables: they live and die inside the statement
        files: set[str] = set()
        for part in _head(stmt):
            for n in ast.walk(part):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                    loads.add(n.id)
                elif isinstance(n, ast.comprehension):
                    local |= _names([n.target], ast.Store)
                elif (
                    isinstance(n, ast.Constant)
                    and isinstance(n.value, str)
                    and n.value.endswith(SCORED_FILES)
                ):
                    files.add(_file_name(n.value))
        files &= set(SCORED_FILES)  # "my_result.json" ends like one but is another file
        stores = _names(_targets(stmt), ast.Store)
        defines = _defines(stmt, imports, stores)
        read.append(
            _Statement(
                stmt,
                around,
                frozenset(loads - local),
                frozenset(stores),
                frozenset(defines),
                frozenset(files),
            )
        )
    return read


def _targets(stmt: ast.stmt) -> list[ast.AST]:
    """What a statement assigns to: its targets, loop and ``with`` variables, walrus targets."""
    if isinstance(stmt, ast.Assign | ast.Delete):
        targets: list[ast.AST] = list(stmt.targets)
    elif isinstance(stmt, ast.AugAssign | ast.AnnAssign | ast.For | ast.AsyncFor):
        targets = [stmt.target]
    elif isinstance(stmt, ast.With | ast.AsyncWith):
        targets = [item.optional_vars for item in stmt.items if item.optional_vars is not None]
    else:
        targets = []
    return targets + [
        n.target for part in _head(stmt) for n in ast.walk(part) if isinstance(n, ast.NamedExpr)
    ]


def _slice(
    scope: ast.Module | ast.FunctionDef | ast.AsyncFunctionDef,
    own: list[_Statement],
    file: str,
    constants: set[str],
) -> tuple[set[int], set[str]] | None:
    """The lines of ``scope`` that write ``file`` or feed such a write, and the names to follow from
    them (see the module docstring); None when the scope does not write ``file``."""
    paths = set(constants)
    sinks: list[_Statement] = []
    grew = True
    while grew:
        grew = False
        for st in own:
            if st not in sinks and (file in st.files or st.loads & paths):
                sinks.append(st)
                paths |= st.stores
                grew = True
    if not sinks:
        return None
    by_node = {id(st.node): st for st in own}
    last = max(st.node.end_lineno or st.node.lineno for st in sinks)
    sink_loops = {id(c) for st in sinks for c in st.around if isinstance(c, _LOOPS)}
    chosen: dict[int, _Statement] = {}
    needed: set[str] = set()

    def take(st: _Statement) -> None:
        for s in (st, *(by_node[id(c)] for c in st.around)):
            if id(s.node) not in chosen:
                chosen[id(s.node)] = s
                needed.update(s.loads)

    for sink in sinks:
        take(sink)
    grew = True
    while grew:
        grew = False
        for st in own:
            if id(st.node) in chosen or not st.defines & needed:
                continue
            if st.node.lineno > last and not any(id(c) in sink_loops for c in st.around):
                continue  # after the last write, outside any loop around one: it cannot flow into it
            take(st)
            grew = True
    lines = set().union(*(_head_lines(st.node) for st in chosen.values()))
    follow = chosen.values() if file in SCORED_NUMBERS else sinks
    named = set().union(*(st.loads for st in follow))
    if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef) and needed & _parameters(scope):
        lines |= set(range(scope.lineno, scope.body[0].lineno))
        if file in SCORED_NUMBERS:
            named |= _names([*scope.args.defaults, *(d for d in scope.args.kw_defaults if d)], ast.Load)
    return lines, named


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    args = node.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    return {a.arg for a in every if a is not None}
