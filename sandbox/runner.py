"""``run``: one candidate through its phases under the limits, scored with the harness's own code.

Layout of ``spec.out_dir`` (docs/contract.md):

    artifact/               the train phase's GOLF_ARTIFACT_DIR (counted bytes)
    train/  eval/           GOLF_OUT of each phase (phases="split")
    run/                    GOLF_OUT of the single process (phases="all")
    train.log  eval.log     the program's stdout+stderr (run.log for phases="all")
    check_positions.i64     the positions whose full rows the program must dump
    result.json             this RunResult, written atomically at the end

A candidate that misbehaves yields a RunResult with a status and a reason; only faults of the harness
itself (missing data, a backend that cannot start) raise :class:`sandbox.errors.HarnessError`.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sandbox.backend import Backend, PhaseInvocation, PhaseOutcome
from sandbox.backends import get_backend
from sandbox.checks import implausibility, timer_verdict
from sandbox.errors import HarnessError
from sandbox.outputs import (
    OutputError,
    ProgramReport,
    check_rows,
    last_traceback,
    measure_artifact,
    read_curve,
    read_nll,
    read_program_report,
    sample_check_positions,
)
from sandbox.progress import CurveTailer, OnEvent
from sandbox.scoring import ShardFormatError, TokenBytes, load_tokens, score, shard_paths
from sandbox.spec import ArtifactBytes, CurvePoint, Phase, RunResult, RunSpec, RunStatus

# GOLF_OUT folder and log name of each phase under ``spec.out_dir`` (see the layout above).
_PHASE_FOLDERS = {Phase.TRAIN: "train", Phase.EVAL: "eval", Phase.ALL: "run"}
_OOM_MARKERS = ("MemoryError", "OutOfMemoryError", "CUDA out of memory", "Cannot allocate memory")


@dataclass
class _Account:
    """What is known so far about the run; becomes the RunResult."""

    status: RunStatus = RunStatus.OK
    reason: str = ""
    error_excerpt: str = ""
    artifact: ArtifactBytes | None = None
    train_seconds: float | None = None
    eval_seconds: float | None = None
    program: ProgramReport = field(default_factory=ProgramReport)
    curve: list[CurvePoint] = field(default_factory=list)
    log_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    def fail(self, status: RunStatus, reason: str) -> None:
        if self.status is RunStatus.OK:
            self.status, self.reason = status, reason

    @property
    def failed(self) -> bool:
        return self.status is not RunStatus.OK


def run(spec: RunSpec, on_event: OnEvent | None = None, *, backend: Backend | None = None) -> RunResult:
    """Run ``spec`` to a :class:`RunResult`; never raises for anything the candidate does.

    ``on_event`` gets a :class:`ProgressEvent` per curve line while training; returning ``"stop"``
    kills the run (status ``pruned``). ``backend`` overrides ``spec.backend`` (tests, custom backends).
    Raises :class:`HarnessError` when the data, tokenizer or entry script are missing, and whatever
    ``on_event`` raised (after the run was killed).
    """
    started = time.monotonic()
    out = Path(spec.out_dir)
    entry_path = Path(spec.program_dir) / spec.entry
    if not entry_path.is_file():
        raise HarnessError(
            f"entry script {entry_path} does not exist", hint="check RunSpec.program_dir/entry"
        )
    train_files, val_files = _data_files(spec)
    try:
        val_tokens = load_tokens(val_files)
    except (OSError, ShardFormatError) as exc:
        raise HarnessError(f"cannot read validation shards: {exc}", hint="rebuild the dataset") from exc
    try:
        token_bytes = TokenBytes.from_tokenizer(spec.data.tokenizer_path)
    except (OSError, RuntimeError) as exc:  # sentencepiece raises RuntimeError for a corrupt model
        raise HarnessError(
            f"cannot load tokenizer {spec.data.tokenizer_path}: {exc}", hint="rebuild the dataset"
        ) from exc
    if backend is None:
        settings = {"image": spec.docker_image} if spec.backend == "docker" else {}
        backend = get_backend(spec.backend, **settings)

    _prepare_out_dir(out)
    positions = sample_check_positions(int(val_tokens.size), spec.check_positions, spec.seed)
    positions_path = out / "check_positions.i64"
    positions.tofile(positions_path)
    knob_env = {**spec.knobs, "SEED": str(spec.seed)}
    account = _Account()
    limits = spec.limits

    def invocation(phase: Phase) -> PhaseInvocation:
        """One phase's files, folders and wall-clock limit; ``all`` gets both the train and the eval share."""
        trains, evaluates = phase is not Phase.EVAL, phase is not Phase.TRAIN
        name = _PHASE_FOLDERS[phase]
        wall_seconds = (
            (limits.train_seconds if trains else 0.0)
            + (limits.eval_seconds if evaluates else 0.0)
            + limits.startup_grace_seconds
        )
        return PhaseInvocation(
            phase=phase,
            program_dir=Path(spec.program_dir),
            entry=spec.entry,
            data_files=tuple((train_files if trains else []) + (val_files if evaluates else [])),
            tokenizer_path=Path(spec.data.tokenizer_path),
            artifact_dir=out / "artifact",
            out_dir=out / name,
            log_path=out / f"{name}.log",
            knob_env=knob_env,
            limits=limits,
            wall_timeout_seconds=wall_seconds,
            nproc=spec.nproc,
            gpus=spec.gpus,
            check_positions_path=positions_path if evaluates else None,
            label=spec.label,
            extra={"docker_image": spec.docker_image} if spec.backend == "docker" else {},
        )

    plan = _run_single_process if spec.phases == "all" else _run_split
    eval_out = plan(invocation, backend, on_event, account, entry_path, limits.train_seconds)

    val_bpb = val_loss = None
    if not account.failed:
        val_bpb, val_loss = _score(spec, eval_out, positions, val_tokens, token_bytes, account)
    if (
        val_bpb is not None
        and account.artifact is not None
        and account.artifact.total > limits.artifact_bytes
    ):
        account.fail(
            RunStatus.OVER_SIZE,
            f"artifact is {account.artifact.total:,} bytes (code {account.artifact.code:,} + model "
            f"{account.artifact.model:,}), over the {limits.artifact_bytes:,}-byte limit",
        )
    # val_bpb is set only when every check passed; the one status that can follow it is over_size.
    result = RunResult(
        status=account.status,
        reason=account.reason,
        val_bpb=val_bpb,
        val_loss=val_loss,
        artifact=account.artifact,
        train_seconds=account.train_seconds,
        eval_seconds=account.eval_seconds,
        wall_seconds=time.monotonic() - started,
        program_train_seconds=account.program.train_seconds,
        steps=account.program.steps if account.program.steps is not None else _last_step(account.curve),
        curve=account.curve,
        log_path=account.log_path,
        error_excerpt=account.error_excerpt,
        suspicious=implausibility(spec, val_bpb, val_loss, account.curve)
        if account.status is RunStatus.OK
        else "",
        claimed_bpb=account.program.claimed_bpb,
        notes=account.notes,
    )
    _write_atomically(out / "result.json", result.model_dump_json(indent=2))
    return result


MakeInvocation = Callable[[Phase], PhaseInvocation]


def _run_single_process(
    invocation: MakeInvocation,
    backend: Backend,
    on_event: OnEvent | None,
    account: _Account,
    entry_path: Path,
    train_limit_seconds: float,
) -> Path:
    """phases="all": one process trains and evaluates, as the challenge runs it. Returns its GOLF_OUT."""
    inv = invocation(Phase.ALL)
    outcome = _execute(backend, inv, on_event, account)
    account.curve = _curve(inv.out_dir, account)
    _check_phase(outcome, inv, account)
    if not account.failed:
        account.program = _read_report(inv.out_dir / "result.json", True, account)
        _measure(entry_path, inv.artifact_dir, account)
        _check_timer(account, harness_seconds=outcome.wall_seconds, limit_seconds=train_limit_seconds)
    return inv.out_dir


def _run_split(
    invocation: MakeInvocation,
    backend: Backend,
    on_event: OnEvent | None,
    account: _Account,
    entry_path: Path,
    train_limit_seconds: float,
) -> Path:
    """phases="split": train, then eval in a fresh process that sees only the artifact and val data."""
    train, evaluation = invocation(Phase.TRAIN), invocation(Phase.EVAL)
    outcome = _execute(backend, train, on_event, account)
    account.train_seconds = outcome.wall_seconds
    account.curve = _curve(train.out_dir, account)
    _check_phase(outcome, train, account)
    if not account.failed:
        account.program = _read_report(train.out_dir / "result.json", False, account)
        _measure(entry_path, train.artifact_dir, account)
    if not account.failed:
        outcome = _execute(backend, evaluation, None, account)
        account.eval_seconds = outcome.wall_seconds
        _check_phase(outcome, evaluation, account)
    if not account.failed:
        eval_report = _read_report(evaluation.out_dir / "result.json", True, account)
        account.program = _merge_reports(account.program, eval_report)
        _check_timer(account, harness_seconds=account.train_seconds, limit_seconds=train_limit_seconds)
    return evaluation.out_dir


def _data_files(spec: RunSpec) -> tuple[list[Path], list[Path]]:
    train = shard_paths(spec.data.dataset_dir, "train")
    val = shard_paths(spec.data.dataset_dir, "val")
    if not train or not val:
        raise HarnessError(
            f"{spec.data.dataset_dir} needs both fineweb_train_*.bin and fineweb_val_*.bin shards",
            hint="build or fetch the dataset first (autogolf data)",
        )
    if not Path(spec.data.tokenizer_path).is_file():
        raise HarnessError(f"tokenizer {spec.data.tokenizer_path} does not exist", hint="build the dataset")
    return train, val


def _prepare_out_dir(out: Path) -> None:
    """Create the layout; clear only names the harness owns, so a rerun starts from nothing stale."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("artifact", "train", "eval", "run"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("train.log", "eval.log", "run.log", "check_positions.i64", "result.json"):
        (out / name).unlink(missing_ok=True)
    for name in ("artifact", "train", "eval"):
        (out / name).mkdir()


def _execute(
    backend: Backend, inv: PhaseInvocation, on_event: OnEvent | None, account: _Account
) -> PhaseOutcome:
    inv.out_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    tailer = CurveTailer(inv.out_dir / "curve.jsonl", on_event, stop).start()
    try:
        outcome = backend.execute(inv, stop)
    finally:
        tailer.finish()
    account.log_path = inv.log_path
    if tailer.callback_error is not None:
        raise tailer.callback_error
    if tailer.stop_requested_at_step is not None:
        account.notes.append(f"stop requested by the caller at step {tailer.stop_requested_at_step}")
    if outcome.log_truncated:
        account.notes.append(f"{inv.log_path.name} was capped at {inv.limits.max_log_bytes:,} bytes")
    if outcome.detail and f"backend: {outcome.detail}" not in account.notes:
        account.notes.append(f"backend: {outcome.detail}")
    return outcome


def _check_phase(outcome: PhaseOutcome, inv: PhaseInvocation, account: _Account) -> None:
    """Fail the account unless the phase exited 0 of its own accord; keep the log's last traceback."""
    if outcome.exit_code == 0 and not (outcome.stopped or outcome.timed_out or outcome.oom):
        return
    phase = inv.phase.value
    account.error_excerpt = excerpt = last_traceback(inv.log_path)
    last_line = excerpt.splitlines()[-1] if excerpt else ""
    if outcome.stopped:
        account.fail(RunStatus.PRUNED, f"stopped during the {phase} phase at the caller's request")
    elif outcome.timed_out:
        account.fail(
            RunStatus.TIMEOUT, f"{phase} phase ran past its {inv.wall_timeout_seconds:.0f} s wall-clock limit"
        )
    elif outcome.oom:
        account.fail(RunStatus.OOM, f"{phase} phase ran out of memory{_memory_limit(inv)}")
    elif any(marker in last_line for marker in _OOM_MARKERS):
        account.fail(RunStatus.OOM, f"{phase} phase ran out of memory{_memory_limit(inv)}: {last_line[:200]}")
    else:
        how = "was killed" if outcome.exit_code is None else f"exited with code {outcome.exit_code}"
        account.fail(
            RunStatus.CRASHED, f"{phase} phase {how}" + (f": {last_line[:200]}" if last_line else "")
        )


def _memory_limit(inv: PhaseInvocation) -> str:
    limit = inv.limits.memory_bytes
    return f" (limit {limit / 2**20:,.0f} MiB)" if limit else ""


def _read_report(path: Path, required: bool, account: _Account) -> ProgramReport:
    try:
        return read_program_report(path, required=required)
    except OutputError as exc:
        account.fail(RunStatus.INVALID, str(exc))
        return ProgramReport()


def _merge_reports(train: ProgramReport, eval_: ProgramReport) -> ProgramReport:
    """Train-phase claims (timer, steps) from the train phase's result.json when it wrote one."""
    return ProgramReport(
        eval_seq_len=eval_.eval_seq_len,
        vocab_size=eval_.vocab_size,
        train_seconds=train.train_seconds if train.train_seconds is not None else eval_.train_seconds,
        steps=train.steps if train.steps is not None else eval_.steps,
        claimed_bpb=eval_.claimed_bpb,
    )


def _measure(entry_path: Path, artifact_dir: Path, account: _Account) -> None:
    try:
        account.artifact = measure_artifact(entry_path, artifact_dir)
    except OutputError as exc:
        account.fail(RunStatus.INVALID, str(exc))


def _check_timer(account: _Account, *, harness_seconds: float | None, limit_seconds: float) -> None:
    claimed = account.program.train_seconds
    if account.failed or claimed is None:
        return
    verdict = timer_verdict(claimed, harness_seconds=harness_seconds, limit_seconds=limit_seconds)
    if verdict is not None:
        account.fail(*verdict)


def _score(
    spec: RunSpec,
    eval_out: Path,
    positions: np.ndarray,
    val_tokens: np.ndarray,
    token_bytes: TokenBytes,
    account: _Account,
) -> tuple[float | None, float | None]:
    report = account.program
    try:
        if report.vocab_size != token_bytes.vocab_size:
            raise OutputError(
                f"result.json says vocab_size {report.vocab_size} but the tokenizer has {token_bytes.vocab_size}"
            )
        nll = read_nll(
            eval_out / "val_nll.f32",
            num_val_tokens=int(val_tokens.size),
            eval_seq_len=int(report.eval_seq_len or 0),
            max_eval_seq_len=spec.limits.max_eval_seq_len,
        )
        check_rows(
            eval_out / "check_rows.f32",
            positions=positions,
            nll=nll,
            val_tokens=val_tokens,
            vocab_size=token_bytes.vocab_size,
        )
        return score(nll, val_tokens, token_bytes)
    except (OutputError, ValueError) as exc:
        account.fail(RunStatus.INVALID, str(exc))
        return None, None


def _curve(gout: Path, account: _Account) -> list[CurvePoint]:
    points, skipped = read_curve(gout / "curve.jsonl")
    if skipped:
        account.notes.append(f"skipped {skipped} malformed line(s) in curve.jsonl")
    return points


def _last_step(curve: list[CurvePoint]) -> int | None:
    return curve[-1].step if curve else None


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
