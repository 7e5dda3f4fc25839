"""The settings a record says it ran with, where each one was said, and where the sayings disagree.

Three sources: the README's run command (``KEY=value ... torchrun --nproc_per_node=8 train_gpt.py``, with
``\\`` continuations, ``export`` lines and ``for SEED in ...`` loops), the ``Hyperparameters:`` block that
later records' logs print (attribute names, Python reprs: what actually ran), and submission.json's
seeds. Each value is checked the way the program would read it (an ``int(...)`` read given ``3.5``
crashes the program, so that is an error), and values for the same name from different files are
compared. Paths, seeds and NCCL variables are told apart from the program's own settings
(:class:`SettingRole`): they differ between machines and runs without anything being wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from importer.hyperparams import Cast, HyperparameterTable, ReadKind
from importer.readme import RunCommand, parse_readme_commands
from sandbox.knobs import KnobValue

_DUMP_LINE = re.compile(r"\s+([a-z_][a-z0-9_]*): ?(.*)")
_PER_RUN = frozenset({"SEED", "RUN_ID"})
_RUNTIME_PREFIXES = ("NCCL_", "TORCH_", "TORCHINDUCTOR_", "PYTORCH_", "CUDA_", "OMP_", "TRITON_")
_LOCATION_SUFFIXES = ("_PATH", "_DIR", "_FILE", "_FILES")


class SettingSource(StrEnum):
    README = "readme"
    LOG = "log"
    SUBMISSION = "submission"


class SettingRole(StrEnum):
    PROGRAM = "program"  # a setting of the program's own: applied to its knob
    PER_RUN = "per_run"  # SEED, RUN_ID: differ between the record's runs by design
    LOCATION = "location"  # where data lives on the author's machine (*_PATH, *_DIR)
    RUNTIME = "runtime"  # for torch/NCCL/CUDA, not read by the program (NCCL_IB_DISABLE)


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class PublishedValue(BaseModel):
    """One value for one setting, as one file gives it."""

    model_config = ConfigDict(frozen=True)

    name: str  # the environment name (a log's attribute is mapped back to it)
    text: str  # as written: an environment string (README) or a Python repr (log)
    typed: KnobValue | None  # converted as the program would; None for a name the program never reads
    source: SettingSource
    file: str  # the file's name inside the record folder
    line: int | None
    role: SettingRole


class SettingIssue(BaseModel):
    model_config = ConfigDict(frozen=True)

    severity: Severity
    name: str | None
    message: str  # names the file(s), the key and the values


class PublishedSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    values: tuple[PublishedValue, ...] = ()
    commands: tuple[RunCommand, ...] = ()
    issues: tuple[SettingIssue, ...] = ()

    def names(self) -> list[str]:
        return list(dict.fromkeys(v.name for v in self.values))

    def errors(self) -> list[SettingIssue]:
        return [i for i in self.issues if i.severity is Severity.ERROR]

    def value(self, name: str) -> PublishedValue | None:
        """The value ``name`` ran with: a log's (what ran) before the README's, that before submission.json's."""
        ranked = [v for v in self.values if v.name == name and v.typed is not None]
        ranked.sort(key=lambda v: _PRECEDENCE.index(v.source))
        return ranked[0] if ranked else None

    def program_values(self) -> dict[str, KnobValue]:
        """The program's own settings (not paths, seeds or runtime variables) with the value each ran with."""
        chosen = {name: self.value(name) for name in self.names() if role_of(name) is SettingRole.PROGRAM}
        return {
            name: value.typed
            for name, value in chosen.items()
            if value is not None and value.typed is not None
        }


_PRECEDENCE = (SettingSource.LOG, SettingSource.README, SettingSource.SUBMISSION)


def read_settings(
    folder: Path, table: HyperparameterTable, *, program: str = "train_gpt.py"
) -> PublishedSettings:
    """Collect and check the published settings of the record in ``folder`` against the program's reads.

    Never raises for content: contradictions come back as issues (errors: a value the program cannot
    convert, a README and a log disagreeing on a program setting; warnings: unknown names, paths and
    per-log differences, a README that runs a file the folder does not have).
    """
    values: list[PublishedValue] = []
    issues: list[SettingIssue] = []
    commands: tuple[RunCommand, ...] = ()
    readme = folder / "README.md"
    if readme.is_file():
        said = parse_readme_commands(readme.read_text(encoding="utf-8", errors="replace"))
        commands = said.commands
        values += [
            _value(table, name, text, SettingSource.README, readme.name, line)
            for name, text, line in said.values
        ]
        issues += [
            SettingIssue(severity=Severity.WARNING, name=name, message=f"{readme.name}: {why}")
            for name, why in said.skipped
        ]
        for command in commands:
            if not (folder / command.program).is_file() and Path(command.program).name != program:
                issues.append(
                    SettingIssue(
                        severity=Severity.WARNING,
                        name=None,
                        message=f"{readme.name}:{command.line}: the run command runs {command.program}, "
                        f"which is not in the record folder (the program imported is {program})",
                    )
                )
    for log in sorted(folder.glob("*.log")):
        text = log.read_text(encoding="utf-8", errors="replace")
        values += [
            _value(table, name, raw, SettingSource.LOG, log.name, line)
            for name, raw, line in _log_dump(text, table)
        ]
    submission = folder / "submission.json"
    if submission.is_file():
        values += [
            _value(table, "SEED", str(seed), SettingSource.SUBMISSION, submission.name, None)
            for seed in _submission_seeds(submission)
        ]
    issues += _check(values, table)
    return PublishedSettings(values=tuple(values), commands=commands, issues=tuple(issues))


def role_of(name: str) -> SettingRole:
    if name in _PER_RUN:
        return SettingRole.PER_RUN
    if name.startswith(_RUNTIME_PREFIXES):
        return SettingRole.RUNTIME
    if name.endswith(_LOCATION_SUFFIXES):
        return SettingRole.LOCATION
    return SettingRole.PROGRAM


def _value(
    table: HyperparameterTable, name: str, text: str, source: SettingSource, file: str, line: int | None
) -> PublishedValue:
    read = table.read(name)
    typed: KnobValue | None = None
    if read is not None and read.kind is not ReadKind.LAUNCHER:
        try:
            typed = _from_repr(read.cast, text) if source is SettingSource.LOG else read.cast.convert(text)
        except (ValueError, TypeError):
            typed = None
    return PublishedValue(
        name=name, text=text, typed=typed, source=source, file=file, line=line, role=role_of(name)
    )


def _from_repr(cast: Cast, text: str) -> KnobValue:
    """A value a log printed with ``print(f"{key}: {value}")``: ``True``, ``600.0``, ``./data``."""
    if cast is Cast.BOOL_INT:
        if text not in ("True", "False"):
            raise ValueError(f"{text!r} is not a printed bool")
        return text == "True"
    return cast.convert(text)


# ------------------------------------------------------------------ logs and submission.json


def _log_dump(text: str, table: HyperparameterTable) -> Iterator[tuple[str, str, int]]:
    """``(name, printed value, line)`` from a ``Hyperparameters:`` block, for attributes that are env reads."""
    attributes = table.by_attribute()
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip() != "Hyperparameters:":
            continue
        for number, entry in enumerate(lines[index + 1 :], start=index + 2):
            match = _DUMP_LINE.fullmatch(entry)
            if match is None:
                break
            read = attributes.get(match[1])
            if read is not None and read.kind is not ReadKind.LAUNCHER:
                yield read.name, match[2], number
        return


def _submission_seeds(path: Path) -> list[int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    seeds = data.get("seeds") if isinstance(data, dict) else None
    return [s for s in seeds if isinstance(s, int)] if isinstance(seeds, list) else []


# ------------------------------------------------------------------ checks


def _check(values: list[PublishedValue], table: HyperparameterTable) -> list[SettingIssue]:
    issues: list[SettingIssue] = []
    warned_unknown: set[str] = set()
    for value in values:
        read = table.read(value.name)
        where = f"{value.file}:{value.line}" if value.line else value.file
        if read is None or read.kind is ReadKind.LAUNCHER:
            if value.role is not SettingRole.RUNTIME and value.name not in warned_unknown:
                warned_unknown.add(value.name)
                issues.append(
                    SettingIssue(
                        severity=Severity.WARNING,
                        name=value.name,
                        message=f"{where} sets {value.name}={value.text}, which the program never reads",
                    )
                )
        elif value.typed is None:
            issues.append(
                SettingIssue(
                    severity=Severity.ERROR,
                    name=value.name,
                    message=f"{where} gives {value.name}={value.text!r}, but the program reads it as "
                    f"{read.cast}(...) (line {read.line}, default {read.default_text or 'none'}) and cannot convert it",
                )
            )
    for name in dict.fromkeys(v.name for v in values):
        issues += _disagreements(name, [v for v in values if v.name == name and v.typed is not None], table)
    return issues


def _disagreements(name: str, values: list[PublishedValue], table: HyperparameterTable) -> list[SettingIssue]:
    role = role_of(name)
    if role in (SettingRole.PER_RUN, SettingRole.RUNTIME) or not values:
        return []
    readme = [v for v in values if v.source is SettingSource.README]
    logs = [v for v in values if v.source is SettingSource.LOG]
    issues: list[SettingIssue] = []
    clash = next(((r, g) for r in readme for g in logs if r.typed != g.typed), None)
    if clash is not None:
        said, ran = clash
        severity = Severity.ERROR if role is SettingRole.PROGRAM else Severity.WARNING
        issues.append(
            SettingIssue(
                severity=severity,
                name=name,
                message=f"{name}: {said.file}:{said.line} sets {said.text}, but {ran.file}:{ran.line} ran {ran.text}",
            )
        )
    distinct_logs = {v.typed for v in logs}
    if len(distinct_logs) > 1:
        first = logs[0]
        other = next(v for v in logs if v.typed != first.typed)
        issues.append(
            SettingIssue(
                severity=Severity.WARNING,
                name=name,
                message=f"{name}: the logs differ: {first.file} ran {first.text}, {other.file} ran {other.text}",
            )
        )
    read = table.read(name)
    if (
        role is SettingRole.PROGRAM
        and not readme
        and logs
        and read is not None
        and read.kind is ReadKind.LITERAL
    ):
        hidden = next((v for v in logs if v.typed != read.default), None)
        if hidden is not None:
            issues.append(
                SettingIssue(
                    severity=Severity.WARNING,
                    name=name,
                    message=f"{name}: {hidden.file}:{hidden.line} ran {hidden.text}, the program's default is "
                    f"{read.default!r} and the README does not set it",
                )
            )
    return issues
