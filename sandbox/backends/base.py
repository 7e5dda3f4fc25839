"""The interface every sandbox backend implements: run one phase of one program, kill it on demand.

The runner (``sandbox.runner``) builds a :class:`PhaseInvocation` per phase with host paths and hands
it to a backend; the backend decides how those paths appear to the program (Docker and the confined
local backend show them in the /golf view of ``sandbox.backends.view``, the unconfined local backend uses them
as they are) and sets the contract's environment variables accordingly.
Backends never score anything: they report how the process ended.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.spec import Limits, Phase


@dataclass(frozen=True)
class PhaseInvocation:
    phase: Phase
    program_dir: Path  # read-only for the program
    entry: str  # script name inside program_dir
    data_files: tuple[Path, ...]  # the only shards this phase may read (host paths)
    tokenizer_path: Path
    artifact_dir: Path  # writable in train/all, read-only in eval
    out_dir: Path  # writable: curve.jsonl, val_nll.f32, check_rows.f32, result.json
    log_path: Path  # stdout+stderr of the program, capped at limits.max_log_bytes
    knob_env: dict[str, str]  # knob values (already strings); contract variables are added by the backend
    limits: Limits
    wall_timeout_seconds: float  # kill everything after this long
    nproc: int = 1
    gpus: tuple[int, ...] = ()
    check_positions_path: Path | None = None  # eval/all only
    # The harness's eval sequence length (eval/all only): it fixes which targets the NLL file must
    # cover, so the backend sets EVAL_SEQ_LEN to it after the knobs; the program cannot claim another.
    eval_seq_len: int | None = None
    label: str = ""
    # A host folder kept as the program's working directory (a published run writes its model there);
    # None: private scratch, gone after the phase.
    workdir: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)  # backend settings (e.g. docker image)


@dataclass(frozen=True)
class PhaseOutcome:
    exit_code: int | None  # None when killed
    wall_seconds: float
    timed_out: bool = False
    stopped: bool = False  # killed because the caller asked (pruning)
    oom: bool = False
    log_truncated: bool = False
    detail: str = ""  # backend's own note (e.g. container state)


class Backend(ABC):
    """Runs phases. Implementations: ``local`` (process group + rlimits) and ``docker``."""

    name: str

    @abstractmethod
    def execute(self, invocation: PhaseInvocation, stop: threading.Event) -> PhaseOutcome:
        """Run one phase to completion, timeout or ``stop``; leave nothing it started running.

        Raises :class:`sandbox.errors.SandboxUnavailable` only when the backend itself cannot work;
        anything the program does wrong comes back as a :class:`PhaseOutcome`.
        """
