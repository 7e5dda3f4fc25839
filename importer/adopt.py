"""The deterministic port: a program in the challenge's official script structure, put under the run
contract by appending autogolf's adapter (``importer/contract_adapter.py``) in place of its
``if __name__ == "__main__"`` guard. Nothing of the program itself changes.

The early records (and any program written like them) share the pieces the adapter drives by name:
``Hyperparameters``, ``GPT`` (whose ``forward(input_ids, target_ids)`` returns the loss through
``F.cross_entropy``), ``main`` (which writes the compressed model, ``*.ptz``, in its working
directory), ``load_validation_tokens``, ``eval_val``, ``build_sentencepiece_luts`` and
``dequantize_state_dict_int8``. :func:`official_structure_gaps` names what a program lacks of them;
a program with gaps is adopted by the LLM port instead (``prompts/task_adopt.txt``).
"""

from __future__ import annotations

import ast
from pathlib import Path

from importer.errors import RecordImportError

ADAPTER_PATH = Path(__file__).parent / "templates" / "contract_adapter.py"  # text appended, never imported
ADAPTER_MARK = "# autogolf run-contract adapter"
_REQUIRED_FUNCTIONS = (
    "main",
    "load_validation_tokens",
    "eval_val",
    "build_sentencepiece_luts",
    "dequantize_state_dict_int8",
)
_REQUIRED_CLASSES = ("Hyperparameters", "GPT")


class NotOfficialStructure(RecordImportError):
    """The program does not have the pieces the deterministic port drives."""


def official_structure_gaps(source: str) -> list[str]:
    """What ``source`` lacks of the official structure, one phrase each; empty when it can be ported."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"it does not parse with this Python ({exc.msg}, line {exc.lineno})"]
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    gaps = [f"no module-level function {name}()" for name in _REQUIRED_FUNCTIONS if name not in functions]
    gaps += [f"no module-level class {name}" for name in _REQUIRED_CLASSES if name not in classes]
    if not _binds_functional(tree):
        gaps.append("torch.nn.functional is not imported as F")
    gpt = classes.get("GPT")
    if gpt is not None:
        forward = next((n for n in gpt.body if isinstance(n, ast.FunctionDef) and n.name == "forward"), None)
        if forward is None or len(forward.args.args) < 3:
            gaps.append("GPT.forward does not take (input_ids, target_ids)")
        elif not any(_is_f_cross_entropy(n) for n in ast.walk(forward)):
            gaps.append("GPT.forward does not compute its loss with F.cross_entropy")
    main = functions.get("main")
    if main is not None:
        text = ast.get_source_segment(source, main) or ""
        if ".ptz" not in text:
            gaps.append("main() writes no compressed model file (*.ptz)")
        if "dequantize_state_dict_int8(" not in text:  # it exports another scheme (int6, GPTQ, ...)
            gaps.append("main() does not reload its model with dequantize_state_dict_int8")
    if ADAPTER_MARK in source:
        gaps.append("it already carries the adapter")
    return gaps


def port_official(source: str) -> str:
    """``source`` with its ``__main__`` guard replaced by the adapter and a guard that runs it.

    Raises :class:`NotOfficialStructure` naming every missing piece."""
    gaps = official_structure_gaps(source)
    if gaps:
        raise NotOfficialStructure(
            "the program does not follow the official script's structure: " + "; ".join(gaps),
            hint="adopt it with the LLM port instead ([agent] proposer = 'llm'), or port it by hand to "
            "the run contract (docs/contract.md) and queue it with autogolf seed",
        )
    lines = source.splitlines(keepends=True)
    for node in reversed(ast.parse(source).body):
        if _is_main_guard(node):
            del lines[node.lineno - 1 : node.end_lineno]
    body = "".join(lines).rstrip() + "\n\n\n"
    adapter = ADAPTER_PATH.read_text(encoding="utf-8").rstrip() + "\n\n\n"
    return body + adapter + 'if __name__ == "__main__":\n    _golf_adapter_main()\n'


def _binds_functional(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Import):
            pairs = [(a.name, a.asname) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "torch.nn":
            pairs = [(f"torch.nn.{a.name}", a.asname) for a in node.names]
        else:
            continue
        if ("torch.nn.functional", "F") in pairs:
            return True
    return False


def _is_f_cross_entropy(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "cross_entropy"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "F"
    )


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    names = [node.test.left, *node.test.comparators]
    return any(isinstance(n, ast.Name) and n.id == "__name__" for n in names) and any(
        isinstance(n, ast.Constant) and n.value == "__main__" for n in names
    )
