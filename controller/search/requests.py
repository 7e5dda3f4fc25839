"""The steering queue: what people ask the campaign to try next, as an append-only JSONL file.

``runs/<campaign>/requests.jsonl`` holds one :class:`Request` per line: a hypothesis for the agent to
implement, exact knob settings, a program to import as a new root, or extra seeds for a candidate.
Lines are only ever appended, under an exclusive ``fcntl`` lock, so several shells (and a running
controller) can add requests at once without losing or renumbering any.

Whether a request is done is *derived*, never written back: a request is consumed when study trials
carry its id in the ``request_id`` user attribute (one trial, or as many as the seeds a confirm
request asks for). So the queue can never disagree with the study, and a crash between "trial
started" and "request marked done" cannot happen. The loop's whole part is::

    for request in pending(run_dir, study.trials()):
        ...  # plan a trial for it, and pass request_attrs(request) to study.ask(..., attrs=...)
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import shutil
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.errors import ControllerError
from controller.store.study import TrialRecord
from controller.store.trial_attrs import TrialAttrs
from sandbox.knobs import KnobTableError, parse_knob_table

log = logging.getLogger(__name__)

REQUESTS_FILE = "requests.jsonl"
SEEDS_DIR = "seeds"


class RequestError(ControllerError):
    """A request cannot be queued as given (empty text, bad knob name, missing program, ...)."""


class RequestKind(StrEnum):
    HYPOTHESIS = "hypothesis"  # an idea in words for the agent to implement
    KNOBS = "knobs"  # exact knob settings, no code change
    SEED = "seed"  # a program imported as a new root of the campaign
    CONFIRM = "confirm"  # more seeds for an existing candidate
    ADOPT = "adopt"  # a foreign program (a record run as published) ported to the run contract


_PREFIX = {
    RequestKind.HYPOTHESIS: "h",
    RequestKind.KNOBS: "k",
    RequestKind.SEED: "s",
    RequestKind.CONFIRM: "c",
    RequestKind.ADOPT: "a",
}


class Request(BaseModel):
    """One queued request. Fields not used by a kind keep their defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str  # h-001, k-001, s-001, c-001
    kind: RequestKind
    created: str  # ISO 8601, UTC
    parent_trial: int | None = None  # hypothesis/knobs: the parent; None = the best parent at the time
    text: str = ""  # hypothesis: the idea, as written
    knob_values: dict[str, str] = Field(default_factory=dict)  # knobs: NAME -> value as an env string
    program: str | None = None  # seed: the copied program, relative to the run folder
    title: str = ""  # seed: what the program is
    knob_names: tuple[str, ...] = ()  # seed: its knob table ((): none; it runs with its own defaults)
    # seed: a program without the run contract, run as the challenge ran it (its score self-reported)
    published: bool = False
    reported_bpb: float | None = None  # seed: the score its record published, for comparison
    needs_cuda: bool = False  # seed: it cannot run without a GPU (a CPU tier records why it skipped)
    # seed, adopt: modules it imports from its folder, copied under seeds/<id>/ (relative paths)
    extra_files: tuple[str, ...] = ()
    trial: int | None = None  # confirm: the candidate to re-run; adopt: the published trial it ports
    source_request: str | None = None  # adopt: the seed request whose program it ports
    seeds: int = 0  # confirm: how many more seeds

    @property
    def trials_wanted(self) -> int:
        """Trials that consume this request: the seeds asked for, or one."""
        return self.seeds if self.kind is RequestKind.CONFIRM else 1

    def summary(self) -> str:
        """One line saying what is asked."""
        on = f" on trial {self.parent_trial}" if self.parent_trial is not None else " on the best parent"
        if self.kind is RequestKind.HYPOTHESIS:
            return self.text.strip().splitlines()[0][:120] + on
        if self.kind is RequestKind.KNOBS:
            return " ".join(f"{k}={v}" for k, v in self.knob_values.items()) + on
        if self.kind is RequestKind.SEED:
            table = f"{len(self.knob_names)} knobs" if self.knob_names else "no knob table"
            how = ", run as published, self-reported score" if self.published else ""
            return f"new root {self.title or self.program} ({table}{how})"
        if self.kind is RequestKind.ADOPT:
            of = f"trial {self.trial}" if self.trial is not None else (self.source_request or self.program)
            return f"adopt {self.title or of} into the run contract (from {of})"
        return f"{self.seeds} more seed(s) of trial {self.trial}"


def requests_path(run_dir: Path) -> Path:
    return Path(run_dir) / REQUESTS_FILE


def request_attrs(request: Request) -> TrialAttrs:
    """The attributes a trial made for ``request`` must carry (pass them to ``study.ask``)."""
    if request.kind is RequestKind.HYPOTHESIS:
        return TrialAttrs(request_id=request.id, hypothesis_id=request.id)
    return TrialAttrs(request_id=request.id)


# ---------------------------------------------------------------------- adding


def add_hypothesis(run_dir: Path, text: str, parent_trial: int | None = None) -> str:
    """Queue an idea for the agent; return its id (``h-NNN``). Raises :class:`RequestError` when empty."""
    if not text.strip():
        raise RequestError("the hypothesis is empty", hint='give the idea in words: hypothesis add "..."')
    return _append(run_dir, RequestKind.HYPOTHESIS, {"text": text.strip(), "parent_trial": parent_trial})


def add_knobs(run_dir: Path, values: Mapping[str, str], parent_trial: int | None = None) -> str:
    """Queue exact knob settings (``NAME -> value``) for a tune trial; return its id (``k-NNN``)."""
    if not values:
        raise RequestError("no knob settings given", hint="pass --knob NAME=VALUE at least once")
    for name in values:
        if not (name.isidentifier() and name.upper() == name):
            raise RequestError(
                f"knob name {name!r} is not an UPPER_CASE identifier",
                hint="use the names of the program's KNOBS table, e.g. MATRIX_LR=0.03",
            )
    clean = {name: str(value) for name, value in values.items()}
    return _append(run_dir, RequestKind.KNOBS, {"knob_values": clean, "parent_trial": parent_trial})


def add_seed(
    run_dir: Path,
    program: Path,
    title: str = "",
    *,
    source: str | None = None,
    published: bool = False,
    reported_bpb: float | None = None,
    needs_cuda: bool = False,
    files: Mapping[str, str] | None = None,
) -> str:
    """Copy ``program`` into ``seeds/<id>.py`` and queue it as a new root; return its id (``s-NNN``).
    ``files`` (relative path -> text) are the modules it imports from its folder, copied beside it.

    ``source`` is the text to queue instead of the file's bytes (an imported record, unwrapped and
    given a knob table); ``published`` marks a program without the run contract, run as published.
    A program without a knob table is accepted (it runs with its own defaults); one with a malformed
    table, or one that is not UTF-8 Python, raises :class:`RequestError` naming the problem.
    """
    program = Path(program)
    copy_bytes = source is None  # a program queued as it is: byte for byte (its code bytes count)
    if source is None:
        try:
            source = program.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RequestError(f"{program}: no such file", hint="give the path of a train_gpt.py") from None
        except UnicodeDecodeError as exc:
            raise RequestError(f"{program} is not UTF-8 text: {exc}") from None
    try:
        knob_names = tuple(k.name for k in parse_knob_table(source, filename=program.name))
    except KnobTableError as exc:
        if "no module-level" not in str(exc):
            raise RequestError(
                str(exc), hint="fix the KNOBS table, or remove it to run with defaults"
            ) from None
        knob_names = ()
    seeds = Path(run_dir) / SEEDS_DIR
    seeds.mkdir(parents=True, exist_ok=True)

    def fields(request_id: str) -> dict[str, Any]:
        # Written before the request line exists, so a queued request always has its program.
        if copy_bytes:
            shutil.copyfile(program, seeds / f"{request_id}.py")
        else:
            (seeds / f"{request_id}.py").write_text(source, encoding="utf-8", newline="\n")
        return {
            "program": f"{SEEDS_DIR}/{request_id}.py",
            "extra_files": _write_extra_files(seeds / request_id, files or {}),
            "title": title or program.name,
            "knob_names": knob_names,
            "published": published,
            "reported_bpb": reported_bpb,
            "needs_cuda": needs_cuda,
        }

    return _append(run_dir, RequestKind.SEED, fields)


def add_adopt(
    run_dir: Path,
    source: str,
    title: str = "",
    *,
    trial: int | None = None,
    source_request: str | None = None,
    needs_cuda: bool = False,
    files: Mapping[str, str] | None = None,
) -> str:
    """Queue the port of a foreign program (``source``, with its knob table) to the run contract;
    return its id (``a-NNN``). ``trial`` or ``source_request`` names the published run it ports.
    Raises :class:`RequestError` when the program has no knob table (import it with seed first)."""
    try:
        knob_names = tuple(k.name for k in parse_knob_table(source))
    except KnobTableError as exc:
        raise RequestError(
            f"the program to adopt has no usable knob table: {exc}",
            hint="import it first with autogolf seed --from (which gives it one), then adopt that trial",
        ) from None
    seeds = Path(run_dir) / SEEDS_DIR
    seeds.mkdir(parents=True, exist_ok=True)

    def fields(request_id: str) -> dict[str, Any]:
        (seeds / f"{request_id}.py").write_text(source, encoding="utf-8", newline="\n")
        return {
            "program": f"{SEEDS_DIR}/{request_id}.py",
            "extra_files": _write_extra_files(seeds / request_id, files or {}),
            "title": title,
            "knob_names": knob_names,
            "trial": trial,
            "source_request": source_request,
            "needs_cuda": needs_cuda,
        }

    return _append(run_dir, RequestKind.ADOPT, fields)


def _write_extra_files(folder: Path, files: Mapping[str, str]) -> tuple[str, ...]:
    """Write a program's sibling modules under ``folder``; their paths relative to it."""
    for rel, text in files.items():
        target = folder / rel
        if target.resolve().parent != folder.resolve() / Path(rel).parent or Path(rel).is_absolute():
            raise RequestError(f"{rel}: a module path must stay inside the program's folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8", newline="\n")
    return tuple(sorted(files))


def extra_files_of(run_dir: Path, request: Request) -> dict[str, str]:
    """The sibling modules queued with a seed or adopt request, by relative path."""
    folder = Path(run_dir) / SEEDS_DIR / request.id
    return {rel: (folder / rel).read_text(encoding="utf-8") for rel in request.extra_files}


def add_confirm(run_dir: Path, trial: int, seeds: int) -> str:
    """Queue ``seeds`` more seeds of candidate ``trial``; return its id (``c-NNN``)."""
    if seeds < 1:
        raise RequestError(f"--seeds {seeds}: ask for at least one seed")
    return _append(run_dir, RequestKind.CONFIRM, {"trial": trial, "seeds": seeds})


def _append(run_dir: Path, kind: RequestKind, fields: dict[str, Any] | Any) -> str:
    """Number and append one request under the file lock. ``fields`` may be a callable taking the id."""
    path = requests_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        handle.seek(0)
        existing = _parse(handle.read(), path)
        prefix = _PREFIX[kind]
        number = 1 + sum(1 for r in existing if r.kind is kind)
        request_id = f"{prefix}-{number:03d}"
        values = fields(request_id) if callable(fields) else fields
        request = Request(
            id=request_id,
            kind=kind,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            **values,
        )
        handle.seek(0, 2)
        handle.write(request.model_dump_json() + "\n")
        handle.flush()
    return request_id


# ---------------------------------------------------------------------- reading


def load_requests(run_dir: Path) -> list[Request]:
    """Every request ever queued, oldest first. An unreadable line (a crash mid-write) is skipped."""
    path = requests_path(run_dir)
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        return _parse(handle.read(), path)


def _parse(text: str, path: Path) -> list[Request]:
    requests = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            requests.append(Request.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as exc:
            log.warning("%s:%d: skipping unreadable request line (%s)", path, number, exc)
    return requests


def trials_of(request_id: str, trials: Iterable[TrialRecord]) -> list[TrialRecord]:
    """The study trials made for ``request_id``, in number order.

    A trial re-run after a crash carries its original's attributes; only the latest of such a chain
    is kept, so a crash does not count twice towards a confirm request's seeds.
    """
    latest: dict[int, TrialRecord] = {}
    for record in trials:
        if record.attrs.request_id != request_id:
            continue
        original = record.attrs.original_trial
        key = original if original is not None else record.number
        if key not in latest or record.number > latest[key].number:
            latest[key] = record
    return sorted(latest.values(), key=lambda r: r.number)


def is_done(request: Request, trials: Iterable[TrialRecord]) -> bool:
    return len(trials_of(request.id, trials)) >= request.trials_wanted


def pending(run_dir: Path, trials: Iterable[TrialRecord]) -> list[Request]:
    """Requests not yet consumed by study trials, oldest first: what the loop should plan next."""
    records = tuple(trials)
    return [r for r in load_requests(run_dir) if not is_done(r, records)]


def outcome_of(request: Request, trials: Iterable[TrialRecord]) -> str:
    """One line: what the request's trials came to (for ``hypothesis list``)."""
    made = trials_of(request.id, trials)
    if not made:
        return "queued"
    parts = []
    for record in made:
        bpb = record.attrs.val_bpb
        if record.trial_state is TrialState.COMPLETE and bpb is not None and math.isfinite(bpb):
            parts.append(f"trial {record.number}: {bpb:.4f} bpb")
        else:
            reason = record.attrs.status_reason.splitlines()[:1]
            parts.append(
                f"trial {record.number}: {record.state.lower()}"
                + (f" ({reason[0][:60]})" if reason and reason[0] else "")
            )
    left = request.trials_wanted - len(made)
    return "; ".join(parts) + (f"; {left} to go" if left > 0 else "")


def hypotheses_from_markdown(text: str) -> list[str]:
    """Split a notes file into hypotheses: each Markdown heading starts one (heading and body);
    a file without headings is a single hypothesis. Empty sections are dropped."""
    sections: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.lstrip().startswith("#") and any(s for s in sections[-1] if s.strip()):
            sections.append([])
        sections[-1].append(line.lstrip("# ").rstrip() if line.lstrip().startswith("#") else line.rstrip())
    return [joined for s in sections if (joined := "\n".join(s).strip())]
