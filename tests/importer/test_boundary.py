"""The importer stands apart: it may use the error family and the knob grammar, nothing of the loop."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "importer"
ALLOWED = {"autogolf.errors", "sandbox.knobs", "pydantic"}


def test_importer_imports_only_the_standard_library_pydantic_errors_and_knobs():
    outside = set()
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top == "importer" or module in ALLOWED:
                    continue
                if top == "torch" and path.name == "environment.py":
                    continue  # asks torch about CUDA, and only when torch is installed
                outside.add(f"{path.name}: {module}")
    assert outside == set()
