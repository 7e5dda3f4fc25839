"""Campaign-file errors as people read them: one pydantic error becomes ``key.path: message (fix: ...)``,
and a misspelt key gets a "did you mean" from :mod:`difflib` (used by ``controller.config``).
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel

_FIXES = {
    "literal_error": "use one of the values listed",
    "string_pattern_mismatch": "use letters, digits, '.', '_' or '-'",
    "greater_than": "raise the value",
    "greater_than_equal": "raise the value",
    "less_than": "lower the value",
    "less_than_equal": "lower the value",
}


def describe_error(error: Any, root: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[str]:
    """One pydantic error as lines ``key.path: message (fix: ...)``."""
    loc = prefix + tuple(str(part) for part in error["loc"])
    kind = error["type"]
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        allowed = _keys_at(root, loc[:-1])
        guess = difflib.get_close_matches(loc[-1], allowed, n=1, cutoff=0.6)
        fix = f"did you mean '{guess[0]}'?" if guess else f"remove it; allowed here: {', '.join(allowed)}"
        return [f"{'.'.join(loc)}: unknown key '{loc[-1]}' (fix: {fix})"]
    if "; fix: " in message:  # our own validators say the fix themselves, one problem per line
        where = f"{'.'.join(loc)}: " if loc else ""
        described = []
        for line in message.splitlines():
            text, _, fix = line.partition("; fix: ")
            described.append(f"{where}{text} (fix: {fix})" if fix else f"{where}{text}")
        return described
    if kind == "missing":
        if len(loc) == 1:
            return [f"{loc[0]}: required table is missing (fix: add a [{loc[0]}] table)"]
        section = ".".join(loc[:-1])
        return [f"{'.'.join(loc)}: required key is missing (fix: add `{loc[-1]} = ...` under [{section}])"]
    if kind.endswith("_type") or kind.endswith("_parsing"):
        fix = "give a value of the type named in the message"
    else:
        fix = _FIXES.get(kind, "see experiments/demo.toml for a working example")
    return [f"{'.'.join(loc) or '<file>'}: {message} (fix: {fix})"]


def _keys_at(root: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """The keys allowed at a location, found by walking the models' field annotations from ``root``."""
    model: Any = root
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return []
        model = _model_in(model.model_fields[part].annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside ``X | None`` (or the annotation itself)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else None
    return annotation
