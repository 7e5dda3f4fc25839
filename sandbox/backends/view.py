"""What a phase's program sees of its files: the ``/golf`` layout both sandboxing backends show it.

The Docker backend mounts this layout into a container; the confined local backend builds it with
bubblewrap (``sandbox.backends.confinement``). Defined once here, so that a program behaves the same on both:

    /golf/program/              the candidate (read-only; the entry script is /golf/program/<entry>)
    /golf/data/<shard>          each shard of the phase, one read-only bind per file
    /golf/tokenizer/<name>      the tokenizer (read-only)
    /golf/artifact/             writable in train and all, read-only in eval
    /golf/out/                  writable: GOLF_OUT
    /golf/check_positions.i64   read-only, when the phase evaluates
    /golf/work/ /golf/home/     private scratch (working directory, HOME), gone after the phase;
                                a published run's /golf/work is a kept host folder (its model is there)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import NamedTuple

from sandbox.backends.base import PhaseInvocation
from sandbox.errors import HarnessError
from sandbox.spec import Phase

GOLF = PurePosixPath("/golf")
PROGRAM_DIR = GOLF / "program"
DATA_DIR = GOLF / "data"
TOKENIZER_DIR = GOLF / "tokenizer"
ARTIFACT_DIR = GOLF / "artifact"
OUT_DIR = GOLF / "out"
WORK_DIR = GOLF / "work"  # the program's working directory
HOME_DIR = GOLF / "home"  # HOME: Triton's and Inductor's compile caches land here
CHECK_POSITIONS = GOLF / "check_positions.i64"


class Bind(NamedTuple):
    """One host path shown to the program at ``target``."""

    source: Path
    target: PurePosixPath
    read_only: bool


def mount_plan(inv: PhaseInvocation) -> list[Bind]:
    """Every bind of one phase's /golf view, in mount order.

    Raises :class:`HarnessError` for an entry outside the program folder or two shards sharing a name
    (each shard is mounted under its own name).
    """
    entry = PurePosixPath(inv.entry)
    if entry.is_absolute() or ".." in entry.parts:
        raise HarnessError(
            f"entry {inv.entry!r} must be a path inside program_dir", hint="use e.g. train_gpt.py"
        )
    artifact_read_only = inv.phase is Phase.EVAL
    plan = [
        Bind(inv.program_dir, PROGRAM_DIR, True),
        Bind(inv.tokenizer_path, TOKENIZER_DIR / inv.tokenizer_path.name, True),
        Bind(inv.artifact_dir, ARTIFACT_DIR, artifact_read_only),
        Bind(inv.out_dir, OUT_DIR, False),
    ]
    seen: dict[str, Path] = {}
    for path in inv.data_files:
        if path.name in seen:
            raise HarnessError(
                f"data files {seen[path.name]} and {path} share the name {path.name!r}",
                hint="give each shard of a phase a distinct file name",
            )
        seen[path.name] = path
        plan.append(Bind(path, DATA_DIR / path.name, True))
    if inv.check_positions_path is not None:
        plan.append(Bind(inv.check_positions_path, CHECK_POSITIONS, True))
    if inv.workdir is not None:
        plan.append(Bind(inv.workdir, WORK_DIR, False))
    # Anything that lives inside the writable output folder is mounted a second time over its place
    # there, with its own mode: otherwise an eval phase could rewrite its artifact through /golf/out.
    out = inv.out_dir.resolve()
    for source, _, read_only in list(plan):
        resolved = source.resolve()
        if resolved != out and resolved.is_relative_to(out):
            plan.append(Bind(source, OUT_DIR / resolved.relative_to(out).as_posix(), read_only))
    return plan


@dataclass(frozen=True)
class ProgramPaths:
    """Where the program finds each contract path: in the /golf view, or at host paths (unconfined)."""

    out: PurePath
    artifact: PurePath
    data: PurePath
    tokenizer: PurePath
    check_positions: PurePath | None

    @classmethod
    def in_view(cls, inv: PhaseInvocation) -> ProgramPaths:
        return cls(
            out=OUT_DIR,
            artifact=ARTIFACT_DIR,
            data=DATA_DIR,
            tokenizer=TOKENIZER_DIR / inv.tokenizer_path.name,
            check_positions=CHECK_POSITIONS if inv.check_positions_path is not None else None,
        )


def program_environment(
    inv: PhaseInvocation,
    paths: ProgramPaths,
    *,
    defaults: dict[str, str],
    fixed: dict[str, str],
) -> dict[str, str]:
    """The program's environment: ``defaults``, then the knob values, then ``fixed`` and the contract.

    The contract's variables come last so that no knob can point a phase at other data or claim
    another eval sequence length than the harness's (``PhaseInvocation.eval_seq_len``).
    """
    env = {**defaults, **inv.knob_env, **fixed}
    env.update(
        GOLF_PHASE=inv.phase.value,
        GOLF_OUT=str(paths.out),
        GOLF_ARTIFACT_DIR=str(paths.artifact),
        DATA_PATH=str(paths.data),
        TOKENIZER_PATH=str(paths.tokenizer),
    )
    env.pop("GOLF_CHECK_POSITIONS", None)
    if paths.check_positions is not None:
        env["GOLF_CHECK_POSITIONS"] = str(paths.check_positions)
    if inv.eval_seq_len is not None:
        env["EVAL_SEQ_LEN"] = str(inv.eval_seq_len)
    return env
