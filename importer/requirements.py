"""What a record's program needs before it can run, found by reading it (never by running it).

Every record so far needs CUDA and NCCL; most import FlashAttention 3 (``flash_attn_interface``, Hopper
only, not on PyPI), some shell out to tools (``pyminify`` from python-minifier, to count compressed code
bytes), the later ones use Python 3.12 f-strings, and the CaseOps record scores BPB against a per-token
byte sidecar instead of the tokenizer's byte counts. Each need is one :class:`Requirement` with a
one-line message and a hint; :mod:`importer.environment` checks the checkable ones against this
machine.
"""

from __future__ import annotations

import ast
import re
import shlex
import sys
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from importer.source import (
    dotted,
    import_aliases,
    parse_module,
    parse_statement,
    split_statements,
    try_guards,
)


class RequirementKind(StrEnum):
    CUDA = "cuda"
    NCCL = "nccl"
    PACKAGE = "package"
    TOOL = "tool"  # an executable run through subprocess or os.system
    PYTHON = "python"  # a minimum interpreter version
    DATA = "data"  # shards, tokenizer, sidecars: described, checked by the data tools, not here
    COMPILE = "compile"


class Need(StrEnum):
    REQUIRED = "required"
    OPTIONAL = "optional"  # the program guards it (try/except ImportError, shutil.which) and runs without
    NOTE = "note"  # worth knowing, nothing to install


class Requirement(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: RequirementKind
    name: str  # the module, tool, version ("3.12") or thing needed
    need: Need
    message: str
    hint: str
    line: int | None = None

    @property
    def checkable(self) -> bool:
        return self.need is not Need.NOTE and self.kind not in (RequirementKind.DATA, RequirementKind.COMPILE)


class Provider(StrEnum):
    """What installs a package alongside autogolf."""

    CORE = "core"  # autogolf's own dependencies: always there
    TRAIN = "train"  # autogolf's ``train`` extra
    NONE = "none"  # nothing: the user installs it


class PackageInfo(BaseModel):
    """Where an importable module comes from."""

    model_config = ConfigDict(frozen=True)

    distribution: str  # the pip name
    provided_by: Provider


# Modules records import that are not in the standard library. Core ones are never reported (autogolf
# cannot be installed without them); tests check this table against pyproject.toml.
KNOWN_PACKAGES: Mapping[str, PackageInfo] = {
    "numpy": PackageInfo(distribution="numpy", provided_by=Provider.CORE),
    "sentencepiece": PackageInfo(distribution="sentencepiece", provided_by=Provider.CORE),
    "huggingface_hub": PackageInfo(distribution="huggingface_hub", provided_by=Provider.CORE),
    "tqdm": PackageInfo(distribution="tqdm", provided_by=Provider.CORE),
    "pydantic": PackageInfo(distribution="pydantic", provided_by=Provider.CORE),
    "torch": PackageInfo(distribution="torch", provided_by=Provider.TRAIN),
    "triton": PackageInfo(distribution="triton", provided_by=Provider.TRAIN),
    "zstandard": PackageInfo(distribution="zstandard", provided_by=Provider.TRAIN),
    "brotli": PackageInfo(distribution="brotli", provided_by=Provider.TRAIN),
    "flash_attn": PackageInfo(distribution="flash-attn", provided_by=Provider.NONE),
    "python_minifier": PackageInfo(distribution="python-minifier", provided_by=Provider.NONE),
}
_FLASH_ATTENTION_3 = "flash_attn_interface"
_TOOL_HINTS = {
    "pyminify": "pip install python-minifier (it provides pyminify)",
    "nvidia-smi": "it comes with the NVIDIA driver; a machine without it has no usable GPU",
    "lrzip": "install it with the system package manager (apt-get install lrzip)",
}
_SUBPROCESS_CALLS = {
    "subprocess.run",
    "subprocess.Popen",
    "subprocess.call",
    "subprocess.check_call",
    "subprocess.check_output",
    "os.system",
    "os.popen",
}
_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
_TOOL_ERRORS = {"FileNotFoundError", "OSError", "Exception", "BaseException", "subprocess.CalledProcessError"}
_VAL_GLOB = re.compile(r"""["']([^"'\n]*fineweb_val_[^"'\n]*)["']""")


def find_requirements(
    source: str,
    *,
    filename: str = "<program>",
    folder: Path | None = None,
    settings: Mapping[str, str] | None = None,
) -> tuple[Requirement, ...]:
    """Everything the program needs, by reading ``source`` (never running it).

    ``folder`` (the record's) tells sibling modules from packages and finds shipped tokenizers and data
    preparation scripts; ``settings`` (environment name -> effective value) fills in data paths and the
    vocabulary. Source this interpreter cannot parse is read statement by statement.
    """
    settings = settings or {}
    tree = parse_module(source, filename)
    found: list[Requirement] = []
    if isinstance(tree, SyntaxError):
        found.append(_python_requirement(tree))
        statements = split_statements(source)
        parsed = zip((parse_statement(s) for s in statements), try_guards(statements), strict=True)
        nodes = _Nodes([(module, caught) for module, caught in parsed if module is not None])
    else:
        nodes = _Nodes([(tree, frozenset())])
    found += _packages(nodes, folder)
    found += _tools(nodes)
    found += _gpu(nodes)
    found += _data(source, folder, settings)
    return tuple(found)


# ------------------------------------------------------------------ reading the program


class _Nodes:
    """Every node of the program with the import aliases and the try blocks that guard each one.

    Built from (module, exception names guarding all of it) pairs: one whole-file module, or one module
    per statement with the guards :func:`try_guards` recovered from indentation.
    """

    def __init__(self, modules: list[tuple[ast.Module, frozenset[str]]]) -> None:
        self.all = [node for module, _ in modules for node in ast.walk(module)]
        self.aliases = import_aliases(n for n in self.all if isinstance(n, ast.stmt))
        self._guards: dict[int, set[str]] = {}
        for module, outer in modules:
            for node in ast.walk(module):
                if outer:
                    self._guards.setdefault(id(node), set()).update(outer)
                if isinstance(node, ast.Try):
                    caught = set().union(*(self._caught(h.type) for h in node.handlers))
                    for statement in node.body:
                        for inner in ast.walk(statement):
                            self._guards.setdefault(id(inner), set()).update(caught)

    def _caught(self, node: ast.expr | None) -> set[str]:
        if node is None:
            return {"BaseException"}  # a bare except
        if isinstance(node, ast.Tuple):
            return set().union(*(self._caught(e) for e in node.elts))
        return {dotted(node, self.aliases) or ""}

    def guarded(self, node: ast.AST, errors: set[str]) -> bool:
        return bool(self._guards.get(id(node), set()) & errors)

    def calls(self, names: set[str]) -> Iterator[ast.Call]:
        for node in self.all:
            if isinstance(node, ast.Call) and dotted(node.func, self.aliases) in names:
                yield node


def _python_requirement(error: SyntaxError) -> Requirement:
    where = f"line {error.lineno}"
    if "f-string" in (error.msg or ""):
        return Requirement(
            kind=RequirementKind.PYTHON,
            name="3.12",
            need=Need.REQUIRED,
            message=f"needs Python 3.12 or newer: its f-strings nest quotes (PEP 701), which Python "
            f"{sys.version_info.major}.{sys.version_info.minor} cannot parse ({error.msg}, {where})",
            hint="run it with Python 3.12+, or rewrite the nested f-string quotes",
            line=error.lineno,
        )
    return Requirement(
        kind=RequirementKind.PYTHON,
        name="syntax",
        need=Need.NOTE,
        message=f"does not parse under Python {sys.version_info.major}.{sys.version_info.minor}: {error.msg} ({where})",
        hint="a newer Python may be needed, or the file is damaged; settings were read statement by statement",
        line=error.lineno,
    )


def _packages(nodes: _Nodes, folder: Path | None) -> list[Requirement]:
    imports: dict[str, tuple[int, bool]] = {}  # top-level module -> (first line, every import guarded)
    for node in nodes.all:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        guarded = nodes.guarded(node, _IMPORT_ERRORS)
        for name in names:
            top = name.split(".")[0]
            line, all_guarded = imports.get(top, (node.lineno, True))
            imports[top] = (line, all_guarded and guarded)
    found = []
    for module, (line, guarded) in imports.items():
        if module in sys.stdlib_module_names or _is_sibling(module, folder):
            continue
        info = KNOWN_PACKAGES.get(module)
        if info is not None and info.provided_by is Provider.CORE:
            continue
        need = Need.OPTIONAL if guarded else Need.REQUIRED
        found.append(_package_requirement(module, info, need, line))
    return found


def _is_sibling(module: str, folder: Path | None) -> bool:
    return folder is not None and (
        (folder / f"{module}.py").is_file() or (folder / module / "__init__.py").is_file()
    )


def _package_requirement(module: str, info: PackageInfo | None, need: Need, line: int) -> Requirement:
    guarded = " (guarded: it runs without)" if need is Need.OPTIONAL else ""
    if module == _FLASH_ATTENTION_3:
        return Requirement(
            kind=RequirementKind.PACKAGE,
            name=module,
            need=need,
            message=f"imports flash_attn_interface, FlashAttention 3 (Hopper GPUs such as the H100), which is "
            f"not on PyPI (line {line}){guarded}",
            hint="supply a FlashAttention 3 wheel built for your torch and CUDA (the records install flash_attn_3 "
            "from download.pytorch.org/whl/cu128 or cu130) and install it where the program runs",
            line=line,
        )
    if info is None:
        hint = f"pip install {module} (the distribution name is guessed from the import)"
    elif info.provided_by is Provider.TRAIN:
        hint = f"pip install 'autogolf[train]' (or pip install {info.distribution})"
    else:
        hint = f"pip install {info.distribution}; autogolf does not depend on it"
    return Requirement(
        kind=RequirementKind.PACKAGE,
        name=module,
        need=need,
        message=f"imports {module} (line {line}){guarded}",
        hint=hint,
        line=line,
    )


def _tools(nodes: _Nodes) -> list[Requirement]:
    found: dict[str, Requirement] = {}
    for call in nodes.calls(_SUBPROCESS_CALLS | {"shutil.which"}):
        tool = _tool_name(call)
        if tool is None:
            continue
        probed = dotted(call.func, nodes.aliases) == "shutil.which"
        need = Need.OPTIONAL if probed or nodes.guarded(call, _TOOL_ERRORS) else Need.REQUIRED
        if tool in found and (found[tool].need is Need.REQUIRED or need is Need.OPTIONAL):
            continue
        how = "looks for" if probed else "runs"
        found[tool] = Requirement(
            kind=RequirementKind.TOOL,
            name=tool,
            need=need,
            message=f"{how} the command {tool} (line {call.lineno})",
            hint=_TOOL_HINTS.get(tool, f"install {tool} and put it on PATH"),
            line=call.lineno,
        )
    return list(found.values())


def _tool_name(call: ast.Call) -> str | None:
    if not call.args:
        return None
    first = call.args[0]
    if isinstance(first, ast.List | ast.Tuple) and first.elts:
        first = first.elts[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.strip():
        try:
            return Path(shlex.split(first.value)[0]).name
        except (ValueError, IndexError):
            return None
    return None


def _gpu(nodes: _Nodes) -> list[Requirement]:
    found: list[Requirement] = []
    says = next(
        (n for n in nodes.all if isinstance(n, ast.Constant) and "CUDA is required" in str(n.value)), None
    )
    uses = next(
        (n for n in nodes.all if isinstance(n, ast.Attribute) and dotted(n, nodes.aliases) == "torch.cuda"),
        None,
    )
    # A program that only asks torch.cuda.is_available() falls back to the CPU: CUDA is optional.
    asks_only = uses is not None and all(
        n.attr == "is_available"
        for n in nodes.all
        if isinstance(n, ast.Attribute) and dotted(n.value, nodes.aliases) == "torch.cuda"
    )
    if says is not None:
        evidence, line = f"it raises 'CUDA is required' without one (line {says.lineno})", says.lineno
    elif uses is not None:
        evidence, line = f"it uses torch.cuda (line {uses.lineno})", uses.lineno
    if says is not None or uses is not None:
        optional = says is None and asks_only
        found.append(
            Requirement(
                kind=RequirementKind.CUDA,
                name="cuda",
                need=Need.OPTIONAL if optional else Need.REQUIRED,
                message=f"CUDA is used when available: {evidence}"
                if optional
                else f"CUDA is required: {evidence}",
                hint="run it on an NVIDIA GPU machine with a CUDA build of torch",
                line=line,
            )
        )
    for call in nodes.calls({"torch.distributed.init_process_group"}):
        backend = next(
            (k.value for k in call.keywords if k.arg == "backend"), call.args[0] if call.args else None
        )
        if isinstance(backend, ast.Constant) and backend.value == "nccl":
            found.append(
                Requirement(
                    kind=RequirementKind.NCCL,
                    name="nccl",
                    need=Need.REQUIRED,
                    message=f"multi-GPU runs use NCCL (init_process_group backend 'nccl', line {call.lineno})",
                    hint="CUDA builds of torch include NCCL; it is needed once torchrun starts more than one process",
                    line=call.lineno,
                )
            )
            break
    for call in nodes.calls({"torch.compile"}):
        if any(
            k.arg == "fullgraph" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in call.keywords
        ):
            found.append(
                Requirement(
                    kind=RequirementKind.COMPILE,
                    name="torch.compile(fullgraph=True)",
                    need=Need.NOTE,
                    message=f"compiles with torch.compile(fullgraph=True) (line {call.lineno}): any graph break is an error",
                    hint="if compilation fails, use the PyTorch version the record was run with (submission.json, README)",
                    line=call.lineno,
                )
            )
            break
    return found


def _data(source: str, folder: Path | None, settings: Mapping[str, str]) -> list[Requirement]:
    globs = list(dict.fromkeys(_VAL_GLOB.findall(source)))
    validation = next((g for g in globs if "bytes" not in g), None)
    sidecar = next((g for g in globs if "bytes" in g), None)
    location = next(
        (f"{k}={settings[k]}" for k in ("DATA_PATH", "DATA_DIR") if k in settings), "its data folder"
    )
    found: list[Requirement] = []
    if validation is not None:
        found.append(
            Requirement(
                kind=RequirementKind.DATA,
                name="validation shards",
                need=Need.REQUIRED,
                message=f"opens the validation shards ({validation}) itself, under {location}: the program, not "
                "the harness, loads them, so they must be there for the whole run, training included",
                hint="fetch the data variant the program was built for and point DATA_PATH (or DATA_DIR) at it",
            )
        )
    if sidecar is not None:
        preparers = sorted(p.name for p in folder.glob("prepare*.py")) if folder is not None else []
        build = (
            f"build it with {preparers[0]} from the record folder"
            if preparers
            else "build it as the record's README says"
        )
        found.append(
            Requirement(
                kind=RequirementKind.DATA,
                name="byte sidecar",
                need=Need.REQUIRED,
                message=f"scores BPB against a per-token byte sidecar ({sidecar}): the bytes per token come from "
                "that file, not from the tokenizer's pieces",
                hint=f"{build}; the sidecar decides the score's denominator, so check that its total equals the "
                "UTF-8 length of the validation text",
            )
        )
    if "TOKENIZER_PATH" in settings or "VOCAB_SIZE" in settings:
        shipped = (
            sorted(str(p.relative_to(folder)) for p in folder.rglob("*.model")) if folder is not None else []
        )
        vocabulary = settings.get("VOCAB_SIZE", "unknown")
        extra = f"; the record ships {', '.join(shipped)}" if shipped else ""
        found.append(
            Requirement(
                kind=RequirementKind.DATA,
                name="tokenizer",
                need=Need.REQUIRED,
                message=f"needs the tokenizer {settings.get('TOKENIZER_PATH', '(path derived from DATA_DIR)')} with "
                f"vocabulary {vocabulary}, and shards tokenized with it{extra}",
                hint=f"fetch the sp{vocabulary} data variant, or set TOKENIZER_PATH to the tokenizer it was built with",
            )
        )
    return found
