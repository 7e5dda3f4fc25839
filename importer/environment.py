"""Which of a record's requirements this environment does not meet.

Kept apart from :mod:`importer.requirements`, which only reads the program: here the machine is asked
(module specs, ``PATH``, the interpreter version, and torch's CUDA and NCCL, importing torch only
when it is installed). Data requirements are not checked here: the data tools own shards and tokenizers.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterable

from importer.requirements import Requirement, RequirementKind


def missing_requirements(requirements: Iterable[Requirement]) -> tuple[Requirement, ...]:
    """The checkable requirements (required and optional) that this environment does not meet."""
    return tuple(r for r in requirements if r.checkable and not _present(r))


def _present(requirement: Requirement) -> bool:
    kind = requirement.kind
    if kind is RequirementKind.PACKAGE:
        return _module_found(requirement.name)
    if kind is RequirementKind.TOOL:
        return shutil.which(requirement.name) is not None
    if kind is RequirementKind.PYTHON:
        return sys.version_info[:2] >= tuple(int(p) for p in requirement.name.split("."))
    if kind is RequirementKind.CUDA:
        return _torch_backends()[0]
    return _torch_backends()[1]  # NCCL


def _module_found(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _torch_backends() -> tuple[bool, bool]:
    """(CUDA available, NCCL available), importing torch only when it is installed (Python keeps the import)."""
    if not _module_found("torch"):
        return False, False
    try:
        import torch
        import torch.distributed
    except (ImportError, OSError):  # a broken install (missing shared libraries) has no usable CUDA
        return False, False
    nccl = torch.distributed.is_available() and torch.distributed.is_nccl_available()
    return bool(torch.cuda.is_available()), bool(nccl)
