"""Bookkeeping of one run's phases: what is known so far (:class:`Account`), executing a phase on a
backend with its progress tailed, and turning how a phase ended into a status with a reason.

Used by ``sandbox.runner`` (the scored phases) and ``sandbox.probe`` (the integrity probes).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.backends.base import Backend, PhaseInvocation, PhaseOutcome
from sandbox.outputs import (
    OutputError,
    ProgramReport,
    last_traceback,
    measure_artifact,
    read_curve,
    read_program_report,
)
from sandbox.progress import CurveTailer, OnEvent
from sandbox.spec import ArtifactBytes, CurvePoint, IntegrityCheck, IntegrityReport, RunStatus, StopRequest

_OOM_MARKERS = ("MemoryError", "OutOfMemoryError", "CUDA out of memory", "Cannot allocate memory")


@dataclass
class Account:
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
    failed_check: IntegrityCheck | None = None
    stopped_by: StopRequest | None = None  # the caller's answer that stopped the run
    probes: list[IntegrityReport] = field(default_factory=list)
    artifact_digest: dict[str, str] = field(default_factory=dict)  # as measured, before any eval ran

    def fail(self, status: RunStatus, reason: str, check: IntegrityCheck | None = None) -> None:
        if self.status is RunStatus.OK:
            self.status, self.reason, self.failed_check = status, reason, check

    def fail_check(self, check: IntegrityCheck, reason: str, status: RunStatus = RunStatus.INVALID) -> None:
        self.fail(status, f"integrity check '{check}' failed: {reason}", check)

    def override_check(self, check: IntegrityCheck, reason: str) -> None:
        """Fail ``check`` whatever went wrong before: its failure matters more than any other."""
        self.status = RunStatus.OK
        self.fail_check(check, reason)

    @property
    def failed(self) -> bool:
        return self.status is not RunStatus.OK


def execute(
    backend: Backend, inv: PhaseInvocation, on_event: OnEvent | None, account: Account
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
    if tailer.stop_request is not None:
        account.stopped_by = tailer.stop_request
        account.notes.append(
            f"stop ({tailer.stop_request}) requested by the caller at step {tailer.stop_requested_at_step}"
        )
    if outcome.log_truncated:
        account.notes.append(f"{inv.log_path.name} was capped at {inv.limits.max_log_bytes:,} bytes")
    if outcome.detail and f"backend: {outcome.detail}" not in account.notes:
        account.notes.append(f"backend: {outcome.detail}")
    return outcome


def check_phase(
    outcome: PhaseOutcome,
    inv: PhaseInvocation,
    account: Account,
    *,
    name: str = "",
    check: IntegrityCheck | None = None,
) -> None:
    """Fail the account unless the phase exited 0 of its own accord; keep the log's last traceback.

    ``name`` and ``check`` say which step it was when it is not a plain phase (the integrity probe)."""
    if outcome.exit_code == 0 and not (outcome.stopped or outcome.timed_out or outcome.oom):
        return
    phase = name or f"{inv.phase.value} phase"
    prefix = f"integrity check '{check}' failed: " if check is not None else ""

    def fail(status: RunStatus, reason: str) -> None:
        account.fail(status, prefix + reason, check)

    account.error_excerpt = excerpt = last_traceback(inv.log_path)
    last_line = excerpt.splitlines()[-1] if excerpt else ""
    if outcome.stopped:
        fail(RunStatus.PRUNED, f"stopped during the {phase} at the caller's request")
    elif outcome.timed_out:
        fail(RunStatus.TIMEOUT, f"{phase} ran past its {inv.wall_timeout_seconds:.0f} s wall-clock limit")
    elif outcome.oom:
        fail(RunStatus.OOM, f"{phase} ran out of memory{_memory_limit(inv)}")
    elif any(marker in last_line for marker in _OOM_MARKERS):
        fail(RunStatus.OOM, f"{phase} ran out of memory{_memory_limit(inv)}: {last_line[:200]}")
    else:
        how = "was killed" if outcome.exit_code is None else f"exited with code {outcome.exit_code}"
        fail(RunStatus.CRASHED, f"{phase} {how}" + (f": {last_line[:200]}" if last_line else ""))


def _memory_limit(inv: PhaseInvocation) -> str:
    limit = inv.limits.memory_bytes
    return f" (limit {limit / 2**20:,.0f} MiB)" if limit else ""


def read_report(path: Path, required: bool, account: Account) -> ProgramReport:
    try:
        return read_program_report(path, required=required)
    except OutputError as exc:
        account.fail(RunStatus.INVALID, str(exc))
        return ProgramReport()


def merge_reports(train: ProgramReport, eval_: ProgramReport) -> ProgramReport:
    """Train-phase claims (timer, steps) from the train phase's result.json when it wrote one."""
    return ProgramReport(
        eval_seq_len=eval_.eval_seq_len,
        vocab_size=eval_.vocab_size,
        train_seconds=train.train_seconds if train.train_seconds is not None else eval_.train_seconds,
        steps=train.steps if train.steps is not None else eval_.steps,
        claimed_bpb=eval_.claimed_bpb,
    )


def measure(entry_path: Path, artifact_dir: Path, account: Account) -> None:
    """Count the artifact's bytes and fingerprint its files: no eval may change what was counted."""
    try:
        account.artifact = measure_artifact(entry_path, artifact_dir)
    except OutputError as exc:
        account.fail(RunStatus.INVALID, str(exc))
        return
    account.artifact_digest = fingerprint(sorted(artifact_dir.rglob("*")))


def fingerprint(paths: list[Path]) -> dict[str, str]:
    """SHA-256 of each regular file's bytes, by path: what the program must not change."""
    digests = {}
    for path in paths:
        if path.is_file() and not path.is_symlink():
            digest = hashlib.sha256()
            with path.open("rb") as f:
                while chunk := f.read(1 << 24):
                    digest.update(chunk)
            digests[str(path)] = digest.hexdigest()
    return digests


def read_phase_curve(gout: Path, account: Account) -> list[CurvePoint]:
    points, skipped = read_curve(gout / "curve.jsonl")
    if skipped:
        account.notes.append(f"skipped {skipped} malformed line(s) in curve.jsonl")
    return points
