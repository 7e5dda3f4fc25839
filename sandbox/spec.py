"""What a run is asked to do (:class:`RunSpec`) and what came of it (:class:`RunResult`).

These are the sandbox's public types: the controller builds a ``RunSpec`` and gets a ``RunResult``
back, whatever the candidate did. A failed candidate is a result with a status, never an exception.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sandbox.code_bytes import CodeBytes

ARTIFACT_LIMIT_BYTES = 16_000_000  # decimal, as the challenge counts it


class StopRequest(StrEnum):
    """What a progress callback answers to end a run early; ``None`` lets it go on."""

    PRUNE = "prune"  # the caller's pruner judged the run hopeless
    USER = "user"  # the user stopped the campaign


class RunStatus(StrEnum):
    OK = "ok"
    CRASHED = "crashed"
    TIMEOUT = "timeout"
    OOM = "oom"
    OVER_SIZE = "over_size"
    INVALID = "invalid"
    PRUNED = "pruned"


class StepExtent(StrEnum):
    """How far a run trained against the steps it was planned (``RunSpec.planned_steps``): two runs
    are comparable only when they trained the same number of steps, or, bound by a wall clock, as long."""

    PLANNED = "planned"  # exactly the planned steps
    CUT = "cut"  # fewer: its wall-clock cap (or the program itself) ended training first
    OVER = "over"  # more: the program did not stop at its ITERATIONS


# The statuses whose training ended on its own, so that the steps reached say how far the program
# went; a crashed, timed-out, out-of-memory or pruned run was stopped by its fault or the harness.
_TRAINED_OUT = frozenset({RunStatus.OK, RunStatus.OVER_SIZE, RunStatus.INVALID})


def step_extent(status: RunStatus, reached: int | None, planned: int | None) -> StepExtent | None:
    """Reached against planned steps; None without a plan or a count, or when training did not end
    on its own (crashed, timeout, oom, pruned: the status says why it stopped)."""
    if reached is None or planned is None or status not in _TRAINED_OUT:
        return None
    if reached < planned:
        return StepExtent.CUT
    return StepExtent.OVER if reached > planned else StepExtent.PLANNED


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
    max_eval_seq_len: int = 65_536  # the largest RunSpec.eval_seq_len accepted


class DataPaths(BaseModel):
    """Where the challenge-format data lives on the host. The sandbox shows each phase only its part."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset_dir: Path  # holds fineweb_train_*.bin and fineweb_val_*.bin
    tokenizer_path: Path  # SentencePiece .model


class ProbeKind(StrEnum):
    """How much of the validation stream the integrity probe re-scores (docs/contract.md)."""

    PREFIX = "prefix"  # the first ~10% of the stream, cut inside it: cheap, run on every run
    FULL = "full"  # the whole stream, cut near its end: what a parent of record must pass


class IntegrityCheck(StrEnum):
    """The harness checks a run must pass; a failed one is named in ``RunResult.failed_check``."""

    COVERAGE = "coverage"  # the NLL file covers exactly the targets the harness's eval_seq_len fixes
    CAUSALITY = "causality"  # NLL before the probe's cut unchanged when the tokens after it change
    ROWS = "rows"  # dumped rows are normalized and agree with the scored NLL
    TARGET_BLIND = "target-blind"  # the distribution at the cut does not depend on its (changed) target
    TRAIN_TIME = "train-time"  # the program's train timer agrees with the harness's clock
    PROBE = "probe"  # the probe eval itself ran to completion
    DATA = "data"  # the validation shards, tokenizer and artifact were not changed by the program


class IntegritySettings(BaseModel):
    """How the harness checks that a score is causal and comes from the artifact alone.

    After the scored eval, the harness runs the program's eval phase again on a *probe* stream: the
    validation tokens up to a cut followed by other text, and asks for the full log-probability rows at
    positions it chose only after the scored NLL file existed. The cut falls anywhere, not only at a
    sequence boundary, so a look-ahead inside an eval window is caught too. The CPU's exact default is
    measured (bench/results/integrity_cost.json).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    probe: ProbeKind = ProbeKind.PREFIX  # the strongest probe: every run gets the prefix one, FULL adds it
    prefix_fraction: float = Field(0.1, gt=0, le=1)  # share of the scored targets a prefix probe covers
    tail_tokens: int = Field(65_536, ge=1)  # changed tokens after the cut (rounded up to whole sequences)
    rows: int = Field(32, ge=0)  # log-prob rows checked (one of them at the cut)
    # An NLL value before the cut "changed" when it moved by more than abs + rel * |nll| nats. Float32
    # reduction-order noise is ~1e-6 relative; an honest program on one device changes none.
    nll_abs_tolerance: float = Field(1e-4, ge=0)
    nll_rel_tolerance: float = Field(1e-4, ge=0)
    # Kernel noise (GPU kernels picked by batch shape are not bitwise reproducible): the share of values
    # that may change. 0 demands bitwise agreement. When it is above 0, the changes must also be
    # smaller than max_abs_change nats each and unbiased: their mean, overall and at the row positions,
    # within max(max_mean_shift_nats, noise_z standard errors).
    max_changed_fraction: float = Field(0.0, ge=0, le=1)
    max_abs_change: float = Field(0.5, gt=0)
    max_mean_shift_nats: float = Field(1e-4, ge=0)
    noise_z: float = Field(6.0, gt=0)


class Plausibility(BaseModel):
    """The harness's own earlier numbers a result is judged against (never the candidate's claims).

    A failed judgement marks the result ``suspicious``; its status stays ok, and the controller keeps
    it out of the parent pool until a run with the full integrity probe passes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    parent_bpb: float | None = None  # the parent's harness-measured val_bpb on the same tier
    seed_bpb: float | None = None  # the lineage's seed program's, on the same tier
    max_gain_over_parent_bpb: float = Field(0.1, ge=0)
    max_gain_over_seed_bpb: float = Field(0.25, ge=0)
    # Below this no 16 MB model has come near on natural text (large LLMs reach ~0.5-0.6 BPB on web
    # text; the challenge ended at 1.06): it also judges the first run of a tier, which has no reference.
    floor_bpb: float = Field(0.5, ge=0)


class RunSpec(BaseModel):
    """One run of one candidate program."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    program_dir: Path  # a checkout of the candidate; mounted read-only
    entry: str = "train_gpt.py"
    knobs: dict[str, str] = Field(default_factory=dict)  # env values, already rendered as strings
    seed: int = 1337
    nproc: int = 1
    gpus: tuple[int, ...] = ()  # GPU indices; empty means CPU
    # split: train then eval as isolated steps; all: one contract process; published: a program
    # without the run contract, run as the challenge ran it (sandbox.published), its score self-reported
    phases: Literal["split", "all", "published"] = "split"
    data: DataPaths
    limits: Limits = Field(default_factory=Limits)
    out_dir: Path  # the harness's folder for this run: logs, outputs, artifact
    # The harness's eval sequence length S (the challenge's is 1024): the NLL file must hold exactly
    # ((N-1)//S)*S values, and the program is given EVAL_SEQ_LEN=S. What it reports is not used.
    eval_seq_len: int = Field(1024, ge=1)
    integrity: IntegritySettings = Field(default_factory=IntegritySettings)
    plausibility: Plausibility = Field(default_factory=Plausibility)
    backend: Literal["local", "docker"] = "local"
    docker_image: str = "autogolf-trainer:latest"
    label: str = ""  # free text carried into logs and container labels (e.g. campaign/trial)
    # The steps the run is to train (its ITERATIONS; None when the program has no such setting), and
    # whether steps alone bound it: the caller turned the program's own wall-clock cap off (a cpu
    # tier), so a run that stops short of them is not comparable. Otherwise the cap may end it first.
    planned_steps: int | None = Field(default=None, ge=0)
    step_bound: bool = False
    # What the program's code bytes are: its file, or the self-extracting file it would ship as
    # (sandbox.code_bytes; the campaign's [sandbox] code_bytes)
    code_bytes: CodeBytes = CodeBytes.READABLE

    @model_validator(mode="after")
    def _check(self) -> RunSpec:
        if self.nproc < 1:
            raise ValueError("nproc must be at least 1")
        if self.gpus and len(self.gpus) != self.nproc:
            raise ValueError(f"nproc={self.nproc} but {len(self.gpus)} GPUs were given")
        if self.eval_seq_len > self.limits.max_eval_seq_len:
            raise ValueError(
                f"eval_seq_len {self.eval_seq_len} is over limits.max_eval_seq_len {self.limits.max_eval_seq_len}"
            )
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


class IntegrityReport(BaseModel):
    """What the integrity probe did and found; kept with every result it ran for."""

    model_config = ConfigDict(frozen=True)

    probe: ProbeKind
    cut: int  # position of the first target the probe changed; NLL[0..cut) was compared
    probe_targets: int  # NLL values the probe eval wrote
    compared: int  # NLL values compared with the scored run (= cut)
    changed: int  # of those, how many moved by more than the tolerance
    max_abs_change: float  # largest |probe - scored| before the cut, nats
    mean_change: float  # mean (probe - scored) before the cut, nats
    rows_checked: int
    probe_seconds: float  # harness wall clock of the probe eval
    digest: str  # sha256 of the scored NLL file and the harness's salt: seeds the cut and the rows


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
    steps: int | None = None  # reached: the program's count, checked against its curve (sandbox.steps)
    steps_planned: int | None = None  # RunSpec.planned_steps
    step_bound: bool = False  # RunSpec.step_bound: its wall-clock cap was off
    curve: list[CurvePoint] = Field(default_factory=list)
    log_path: Path | None = None
    error_excerpt: str = ""  # the last traceback, for feedback to the agent
    suspicious: str = ""  # non-empty: plausibility check failed; keep out of the parent pool
    claimed_bpb: float | None = None  # what the program said; a log, not a score
    # The last val_bpb its scored eval printed (its log, not a score): an adoption is accepted only
    # when the harness's BPB equals it (controller.search.adoption)
    printed_bpb: float | None = None
    notes: list[str] = Field(default_factory=list)  # harness remarks that did not change the status
    failed_check: IntegrityCheck | None = None  # the check that made the status what it is, if one did
    stopped_by: StopRequest | None = None  # set when the caller's progress callback stopped the run
    probes: list[IntegrityReport] = Field(default_factory=list)  # the integrity probes it passed, in order
    # val_bpb/val_loss are the program's own final log line (a published run): not recomputed,
    # never verified, so never a parent of record
    self_reported: bool = False

    @property
    def verified(self) -> bool:
        """Scored, and passed the full integrity probe (what a parent of record needs)."""
        return self.status is RunStatus.OK and any(p.probe is ProbeKind.FULL for p in self.probes)

    @property
    def counted(self) -> bool:
        return self.status is RunStatus.OK

    @property
    def step_extent(self) -> StepExtent | None:
        """Whether it trained its planned steps, was cut short, or went past them (None: unknown)."""
        return step_extent(self.status, self.steps, self.steps_planned)

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
