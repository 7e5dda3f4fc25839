"""What a run is asked to do (:class:`RunSpec`) and what came of it (:class:`RunResult`).

These are the sandbox's public types: the controller builds a ``RunSpec`` and gets a ``RunResult``
back, whatever the candidate did. A failed candidate is a result with a status, never an exception.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ARTIFACT_LIMIT_BYTES = 16_000_000  # decimal, as the challenge counts it


class RunStatus(StrEnum):
    OK = "ok"
    CRASHED = "crashed"
    TIMEOUT = "timeout"
    OOM = "oom"
    OVER_SIZE = "over_size"
    INVALID = "invalid"
    PRUNED = "pruned"


class Phase(StrEnum):
    TRAIN = "train"
    EVAL = "eval"
    ALL = "all"


class Limits(BaseModel):
    """Hard limits for one run. Seconds are wall-clock, measured by the harness from outside."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train_seconds: float = 600.0
    eval_seconds: float = 600.0
    # Start-up, torch.compile warm-up and export are not training time; they get this much extra
    # wall time on top of the phase limit before the run is killed.
    startup_grace_seconds: float = 180.0
    artifact_bytes: int = ARTIFACT_LIMIT_BYTES
    memory_bytes: int | None = None
    max_processes: int | None = 4096
    max_open_files: int = 4096
    max_file_bytes: int = 8 * 1024**3
    max_log_bytes: int = 64 * 1024**2
    # The harness accepts eval sequence lengths up to this; the NLL file must cover every target
    # that fits in whole sequences of the length the program reports.
    max_eval_seq_len: int = 65_536


class DataPaths(BaseModel):
    """Where the challenge-format data lives on the host. The sandbox shows each phase only its part."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset_dir: Path  # holds fineweb_train_*.bin and fineweb_val_*.bin
    tokenizer_path: Path  # SentencePiece .model


class RunSpec(BaseModel):
    """One run of one candidate program."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    program_dir: Path  # a checkout of the candidate; mounted read-only
    entry: str = "train_gpt.py"
    knobs: dict[str, str] = Field(default_factory=dict)  # env values, already rendered as strings
    seed: int = 1337
    nproc: int = 1
    gpus: tuple[int, ...] = ()  # GPU indices; empty means CPU
    phases: Literal["split", "all"] = "split"  # split: train then eval as isolated steps
    data: DataPaths
    limits: Limits = Field(default_factory=Limits)
    out_dir: Path  # the harness's folder for this run: logs, outputs, artifact
    check_positions: int = 32  # random positions whose full log-prob rows are verified
    backend: Literal["local", "docker"] = "local"
    docker_image: str = "autogolf-trainer:latest"
    label: str = ""  # free text carried into logs and container labels (e.g. campaign/trial)
    # Plausibility (a failed check marks the result ``suspicious``; the status stays ok):
    reference_bpb: float | None = None  # the parent's val_bpb, when there is one
    max_plausible_gain_bpb: float = 0.1  # a drop below reference_bpb by more than this is suspicious
    max_val_below_train_nats: float = 0.5  # val_loss this far below the final train loss is suspicious

    @model_validator(mode="after")
    def _check(self) -> RunSpec:
        if self.nproc < 1:
            raise ValueError("nproc must be at least 1")
        if self.gpus and len(self.gpus) != self.nproc:
            raise ValueError(f"nproc={self.nproc} but {len(self.gpus)} GPUs were given")
        return self


class CurvePoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    step: int
    train_loss: float
    elapsed_ms: float


class ArtifactBytes(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: int
    model: int

    @property
    def total(self) -> int:
        return self.code + self.model


class RunResult(BaseModel):
    """The harness's account of a run. Metrics are present only when ``status`` says they count."""

    model_config = ConfigDict(frozen=True)

    status: RunStatus
    reason: str = ""  # why the status is not ok, in one line
    val_bpb: float | None = None  # recomputed by the harness from val_nll.f32
    val_loss: float | None = None  # mean NLL in nats per token, recomputed by the harness
    artifact: ArtifactBytes | None = None
    train_seconds: float | None = None  # harness wall clock of the train phase
    eval_seconds: float | None = None
    wall_seconds: float = 0.0
    program_train_seconds: float | None = None  # what the program's own timer said
    steps: int | None = None
    curve: list[CurvePoint] = Field(default_factory=list)
    log_path: Path | None = None
    error_excerpt: str = ""  # the last traceback, for feedback to the agent
    suspicious: str = ""  # non-empty: plausibility check failed; keep out of the parent pool
    claimed_bpb: float | None = None  # what the program said; a log, not a score
    notes: list[str] = Field(default_factory=list)  # harness remarks that did not change the status

    @property
    def counted(self) -> bool:
        return self.status is RunStatus.OK

    @model_validator(mode="after")
    def _metrics_only_when_ok(self) -> RunResult:
        if (
            self.status is not RunStatus.OK
            and self.val_bpb is not None
            and self.status is not RunStatus.OVER_SIZE
        ):
            raise ValueError(f"a {self.status} run carries no val_bpb")
        if self.status is RunStatus.OK and self.val_bpb is None:
            raise ValueError("an ok run needs val_bpb")
        return self


class ProgressEvent(BaseModel):
    """Parsed progress handed to ``on_event`` while a run trains."""

    model_config = ConfigDict(frozen=True)

    step: int
    train_loss: float
    elapsed_ms: float
