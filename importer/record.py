"""One published record, read whole: :func:`load_record` joins the importer's steps into an ImportedRecord.

A record folder (``README.md``, ``submission.json``, ``train*.log``, ``train_gpt.py``) or a single program
file goes in; out comes the readable program, its knobs with the values the record was published with
as defaults, those settings with where each was said, what the program needs, and the score the record
reported. Reading only: nothing is executed and nothing is written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from importer.errors import RecordImportError
from importer.hyperparams import HyperparameterTable, ReadKind, read_hyperparameters
from importer.requirements import Requirement, find_requirements
from importer.settings import PublishedSettings, SettingSource, read_settings
from importer.siblings import sibling_modules
from importer.unwrap import Layer, Wrapping, unwrap_file
from sandbox.knobs import Knob

_PROGRAM = "train_gpt.py"
_SCORE_LINE = re.compile(r"val_bpb[:=]\s*([0-9]+\.[0-9]+)")
_LOSS = re.compile(r"val_loss[:=]\s*([0-9]+\.[0-9]+)")


class ReportedScore(BaseModel):
    """The score the record claims, and where the claim is."""

    model_config = ConfigDict(frozen=True)

    val_bpb: float
    val_loss: float | None
    source: SettingSource
    file: str


class ImportedRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str  # submission.json's name, else the folder's or file's
    path: Path  # what was imported: the folder or the .py file
    program: Path  # the file the record runs (train_gpt.py)
    source_path: Path  # the file whose (decoded) text is ``source``: the stub's target, or ``program``
    source: str  # readable program text
    wrapping: Wrapping
    layers: tuple[Layer, ...]  # self-extracting decode steps, outermost first
    stub_target: Path | None
    hyperparameters: HyperparameterTable  # every environment read, how it was found
    knobs: tuple[Knob, ...]  # the literal reads, published values applied as defaults
    settings: PublishedSettings
    requirements: tuple[Requirement, ...]
    score: ReportedScore | None
    # modules it imports from its folder: relative path -> text (importer.siblings); they travel with it
    siblings: dict[str, str] = {}


def load_record(path: Path | str) -> ImportedRecord:
    """Import a record folder, or one program file (then there are no published settings to read).

    Raises :class:`RecordImportError` for a path that is neither, a folder with no program, a wrapper that
    does not decode or cannot be read without running it, a stub that points outside its folder or at a
    missing file, a program with no settings, an unreadable submission.json, and published settings that
    contradict the program (every such error listed, each naming its file, key and values).
    """
    path = Path(path)
    if path.is_dir():
        folder: Path | None = path
        program = _find_program(path)
    elif path.is_file() and path.suffix == ".py":
        folder, program = None, path
    elif path.exists():
        raise RecordImportError(
            f"{path} is neither a record folder nor a .py program", "pass the folder or train_gpt.py"
        )
    else:
        raise RecordImportError(f"{path} does not exist", "check the path to the record folder")
    submission = _submission(folder / "submission.json") if folder is not None else {}
    unwrapped = unwrap_file(program)
    source_path = unwrapped.source_file or program
    table = read_hyperparameters(unwrapped.source, filename=source_path.name)
    settings = (
        read_settings(folder, table, program=program.name) if folder is not None else PublishedSettings()
    )
    errors = settings.errors()
    if errors:
        raise RecordImportError(
            f"{path}: the published settings contradict the program:\n  "
            + "\n  ".join(e.message for e in errors),
            "correct the README or log, or import the program file alone to take its own defaults",
        )
    published = settings.program_values()
    knobs = tuple(
        Knob.model_validate({**knob.model_dump(), "default": published.get(knob.name, knob.default)})
        for knob in table.knobs()
    )
    requirements = find_requirements(
        unwrapped.source,
        filename=source_path.name,
        folder=program.parent,
        settings=_effective(table, settings),
    )
    name = submission.get("name")
    return ImportedRecord(
        name=name
        if isinstance(name, str) and name
        else (folder.name if folder is not None else program.stem),
        path=path,
        program=program,
        source_path=source_path,
        source=unwrapped.source,
        wrapping=unwrapped.wrapping,
        layers=unwrapped.layers,
        stub_target=unwrapped.stub_target,
        hyperparameters=table,
        knobs=knobs,
        settings=settings,
        requirements=requirements,
        score=_score(folder, submission) if folder is not None else None,
        siblings=sibling_modules(unwrapped.source, program.parent, exclude=(program, source_path)),
    )


def _find_program(folder: Path) -> Path:
    if (folder / _PROGRAM).is_file():
        return folder / _PROGRAM
    candidates = sorted(folder.glob("train*.py"))
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        names = ", ".join(c.name for c in candidates)
        raise RecordImportError(
            f"{folder}: no {_PROGRAM}, and several programs could be it ({names})",
            "import the program file itself",
        )
    raise RecordImportError(
        f"{folder}: finds no program: no {_PROGRAM} or other train*.py in the folder",
        "a record folder holds train_gpt.py next to README.md and submission.json; or import the .py file",
    )


def _submission(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordImportError(
            f"{path}: cannot be read as JSON: {exc}", "fix or remove submission.json"
        ) from exc
    if not isinstance(data, dict):
        raise RecordImportError(
            f"{path}: holds a {type(data).__name__}, not an object", "fix or remove submission.json"
        )
    return data


def _effective(table: HyperparameterTable, settings: PublishedSettings) -> dict[str, str]:
    """Environment name -> the value it ran with (published, else the default), for describing data needs."""
    effective: dict[str, str] = {}
    for read in table.reads:
        if read.kind is ReadKind.LAUNCHER:
            continue
        published = settings.value(read.name)
        if published is not None:
            effective[read.name] = str(published.typed)
        elif read.kind is ReadKind.LITERAL:
            effective[read.name] = str(read.default)
        else:
            effective[read.name] = f"(derived: {' '.join(read.default_text.split())[:80]})"
    return effective


def _score(folder: Path, submission: dict[str, object]) -> ReportedScore | None:
    """submission.json's val_bpb when it has one, else the last val_bpb line the first log printed."""
    bpb, loss = submission.get("val_bpb"), submission.get("val_loss")
    if isinstance(bpb, int | float) and not isinstance(bpb, bool):
        return ReportedScore(
            val_bpb=float(bpb),
            val_loss=float(loss) if isinstance(loss, int | float) else None,
            source=SettingSource.SUBMISSION,
            file="submission.json",
        )
    for log in sorted(folder.glob("*.log")):
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        final = [line for line in lines if _SCORE_LINE.search(line) and not line.startswith("step:")]
        if final:
            loss_match = _LOSS.search(final[-1])
            return ReportedScore(
                val_bpb=float(_SCORE_LINE.search(final[-1])[1]),  # type: ignore[index]
                val_loss=float(loss_match[1]) if loss_match else None,
                source=SettingSource.LOG,
                file=log.name,
            )
    return None
