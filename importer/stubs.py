"""Exec stubs: a tiny program that runs a sibling file, and which file that is, worked out without running it.

The 2026-04-06 record's ``train_gpt.py`` is 74 bytes:
``exec(open(__file__.replace("train_gpt.py","train_gpt_decode.py")).read())``. The path expression is
evaluated by a tiny interpreter that knows string literals, ``__file__`` (the stub's own name),
``str.replace``, ``os.path.join/dirname/abspath`` and ``pathlib.Path`` and nothing else, so nothing the
stub says can run.
"""

from __future__ import annotations

import ast
import posixpath

from importer.source import dotted, import_aliases


def is_exec(node: ast.expr) -> bool:
    """A call of the builtin ``exec``."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "exec"


def stub_path(tree: ast.Module) -> ast.expr | None:
    """The path expression when the module only runs another file, else None.

    Understood: ``exec(open(P).read())``, ``exec(compile(open(P).read(), ...))``,
    ``exec(<path object>.read_text())`` and ``runpy.run_path(P, ...)``, after imports and a docstring.
    """
    aliases = import_aliases(tree.body)
    body = [
        node
        for node in tree.body
        if not isinstance(node, ast.Import | ast.ImportFrom)
        and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
    ]
    if len(body) != 1 or not isinstance(body[0], ast.Expr) or not isinstance(body[0].value, ast.Call):
        return None
    call = body[0].value
    if dotted(call.func, aliases) == "runpy.run_path" and call.args:
        return call.args[0]
    if not is_exec(call) or not call.args:
        return None
    code = call.args[0]
    if isinstance(code, ast.Call) and dotted(code.func, aliases) == "compile" and code.args:
        code = code.args[0]
    if not (isinstance(code, ast.Call) and isinstance(code.func, ast.Attribute)):
        return None
    reader = code.func.value
    if code.func.attr == "read_text":
        return reader  # a path object: Path(...), its .parent, `/` or .with_name(...)
    if (
        code.func.attr == "read"
        and isinstance(reader, ast.Call)
        and reader.args
        and dotted(reader.func, aliases) == "open"
    ):
        return reader.args[0]
    return None


def evaluate_path(node: ast.expr, stub_name: str) -> str | None:
    """A stub's path expression as a path relative to the stub's folder; None if not understood.

    ``__file__`` is the stub's own name, so ``os.path.dirname(__file__)`` is the folder itself.
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id == "__file__":
        return stub_name
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        inner = evaluate_path(node.value, stub_name)
        return None if inner is None else posixpath.dirname(inner)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left, right = evaluate_path(node.left, stub_name), evaluate_path(node.right, stub_name)
        return None if left is None or right is None else posixpath.join(left, right)
    if not isinstance(node, ast.Call):
        return None
    args = [evaluate_path(a, stub_name) for a in node.args]
    if any(a is None for a in args) or node.keywords:
        return None
    func = node.func
    if isinstance(func, ast.Attribute):
        owner = func.value
        if func.attr in ("replace", "with_name") and not (isinstance(owner, ast.Name) and owner.id == "os"):
            base = evaluate_path(owner, stub_name)
            if base is None:
                return None
            if func.attr == "replace" and len(args) == 2:
                return base.replace(args[0], args[1])  # type: ignore[arg-type]
            if func.attr == "with_name" and len(args) == 1:
                return posixpath.join(posixpath.dirname(base), args[0])  # type: ignore[arg-type]
            return None
        name = ast.unparse(func)
    elif isinstance(func, ast.Name):
        name = func.id
    else:
        return None
    if name in ("os.path.join", "posixpath.join") and args:
        return posixpath.join(*args)  # type: ignore[arg-type]
    if name == "os.path.dirname" and len(args) == 1:
        return posixpath.dirname(args[0])  # type: ignore[arg-type]
    if name in ("os.path.abspath", "os.path.realpath", "Path", "pathlib.Path", "str") and len(args) == 1:
        return args[0]
    return None
