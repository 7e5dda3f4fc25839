"""A challenge record (a records folder, or one program) queued as a new root of the campaign.

``importer`` reads the record without running it; this module turns what it read into a seed
request: the readable program (wrappers and exec stubs resolved), given a knob table whose defaults
are the record's published settings when it has none (so tiers can shrink it and the search can
tune it), and marked *published* when it does not follow the run contract (it then runs as the
challenge ran it, its score self-reported; see sandbox.published). What the program needs that this
machine lacks is returned for the caller to say, one line per piece.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from controller.search.requests import add_seed
from importer import (
    KNOWN_PACKAGES,
    ImportedRecord,
    Need,
    Provider,
    Requirement,
    RequirementKind,
    load_record,
    missing_requirements,
    render_knob_table,
)

# Lets the injected table run as ordinary code. The program reads its environment, not KNOBS, so
# each entry puts its default there unless the environment already has a value: the program then
# runs with the table's defaults (its published settings, or what a tuned child baked in) while a
# tier's or the sampler's value, passed in the environment, still wins.
_KNOB_SHIM = (
    "def Knob(name, type, default, **options):  # noqa: N802 - autogolf's knob table (sandbox/knobs.py)\n"
    '    text = ("1" if default else "0") if isinstance(default, bool) else str(default)\n'
    '    __import__("os").environ.setdefault(name, text)\n'
    "    return (name, type, default, options)\n"
)
_TABLE_HEADER = (
    "# autogolf: the settings this program reads from its environment, with the values its record\n"
    "# was published with as defaults ({origin}). Each default is put in the environment unless it\n"
    "# has a value already (autogolf sets them per tier); the program reads the environment as before.\n"
)


_NOT_ON_PYPI = {"flash_attn_interface"}  # FlashAttention 3: a wheel built for the image's torch and CUDA
_PIP_TOOLS = {"pyminify": "python-minifier"}  # command-line tools that pip installs
_HOST_TOOLS = {"nvidia-smi"}  # the NVIDIA container toolkit mounts it from the host at run time


@dataclass(frozen=True)
class QueuedRecord:
    """What ``queue_record`` queued, and what the caller should tell the user about it."""

    request_id: str
    record: ImportedRecord
    published: bool  # no run contract: it runs as published, its score self-reported
    missing: tuple[Requirement, ...]  # needed and absent on this machine
    table_added: bool  # the program had no knob table; one was written from its settings


@dataclass(frozen=True)
class ImageNeeds:
    """What the docker backend's trainer image must be built with to run a record."""

    wheels: tuple[str, ...]  # modules from a wheel the user supplies (not on PyPI)
    pip: tuple[str, ...]  # PyPI distributions
    tools: tuple[str, ...]  # system packages

    def __bool__(self) -> bool:
        return bool(self.wheels or self.pip or self.tools)


def image_needs(record: ImportedRecord) -> ImageNeeds:
    """The wheels, PyPI packages and system tools the record needs that the trainer image lacks
    (it has torch, triton and the ``train`` extra)."""
    wheels, pip, tools = [], [], []
    for need in record.requirements:
        if need.need is not Need.REQUIRED:
            continue
        if need.kind is RequirementKind.PACKAGE:
            info = KNOWN_PACKAGES.get(need.name)
            if need.name in _NOT_ON_PYPI:
                wheels.append(need.name)
            elif info is not None and info.provided_by is Provider.NONE:
                pip.append(info.distribution)
        elif need.kind is RequirementKind.TOOL and need.name not in _HOST_TOOLS:
            (pip if need.name in _PIP_TOOLS else tools).append(_PIP_TOOLS.get(need.name, need.name))
    return ImageNeeds(tuple(wheels), tuple(pip), tuple(tools))


def needs_cuda(record: ImportedRecord) -> bool:
    return requires_cuda(record.requirements)


def requires_cuda(requirements: Iterable[Requirement]) -> bool:
    """Whether any of ``requirements`` is CUDA the program cannot run without."""
    return any(r.kind is RequirementKind.CUDA and r.need is Need.REQUIRED for r in requirements)


def follows_contract(source: str) -> bool:
    """Whether the program reads the run contract's variables (docs/contract.md)."""
    return "GOLF_OUT" in source and "GOLF_PHASE" in source


def has_knob_table(source: str) -> bool:
    """Whether the program assigns a module-level ``KNOBS`` table (sandbox.knobs reads it)."""
    return any(line.startswith("KNOBS") for line in source.splitlines())


def with_knob_table(record: ImportedRecord) -> tuple[str, bool]:
    """The record's readable source with a knob table, and whether one was added. A program that has
    a ``KNOBS`` table keeps its own."""
    source = record.source
    if has_knob_table(source):
        return source, False
    table = _TABLE_HEADER.format(origin=record.name) + _KNOB_SHIM + render_knob_table(record.knobs) + "\n"
    lines = source.splitlines(keepends=True)
    at = _first_code_line(source)
    return "".join(lines[:at]) + ("\n" if at else "") + table + "\n" + "".join(lines[at:]), True


def queue_record(run_dir: Path, path: Path, title: str = "") -> QueuedRecord:
    """Read the record at ``path`` and queue it as a seed request. Raises the importer's
    :class:`~importer.RecordImportError` (nothing queued) for a record that cannot be read."""
    record = load_record(path)
    source, added = with_knob_table(record)
    published = not follows_contract(record.source)
    score = record.score.val_bpb if record.score is not None else None
    request_id = add_seed(
        run_dir,
        record.source_path,
        title or record.name,
        source=source,
        published=published,
        reported_bpb=score,
        needs_cuda=needs_cuda(record),
        files=record.siblings,
    )
    return QueuedRecord(request_id, record, published, missing_requirements(record.requirements), added)


def _first_code_line(source: str) -> int:
    """The 0-based line before which a table may go: after the module docstring and any
    ``from __future__`` imports (which must stay first). 0 for source this Python cannot parse."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return 0
    index = 0
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        index = 1
    while (
        index < len(body) and isinstance(body[index], ast.ImportFrom) and body[index].module == "__future__"
    ):
        index += 1
    if index == 0:
        return 0
    return body[index - 1].end_lineno or 0
