"""``run``: one candidate through its phases under the limits, scored with the harness's own code.

Layout of ``spec.out_dir`` (docs/contract.md):

    artifact/                    the train phase's GOLF_ARTIFACT_DIR (counted bytes)
    train/  eval/                GOLF_OUT of each phase (phases="split")
    run/                         GOLF_OUT of the single process (phases="all" and "published")
    work/                        a published run's working directory (its *.ptz model is counted)
    probe-prefix/  probe-full/   GOLF_OUT of each integrity probe's eval (sandbox.probe)
    probe-*-data/                a probe's validation stream, one shard
    probe-*-positions.i64        the positions whose full rows a probe must dump
    *.log                        the program's stdout+stderr of each of the above
    result.json                  this RunResult, written atomically at the end

The scored eval is asked for no rows: their positions are drawn only once its NLL file exists, and the
probes dump them. A candidate that misbehaves yields a RunResult with a status and a reason (naming the
failed check when one failed); only faults of the harness itself (missing data, a backend that cannot
start) raise :class:`sandbox.errors.HarnessError`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sandbox.backends.base import Backend, PhaseInvocation
from sandbox.backends.registry import get_backend
from sandbox.checks import implausibility, timer_verdict
from sandbox.code_bytes import counted_code_bytes
from sandbox.errors import HarnessError
from sandbox.outputs import CoverageError, OutputError, read_nll
from sandbox.phases import (
    Account,
    check_phase,
    execute,
    fingerprint,
    measure,
    merge_reports,
    read_phase_curve,
    read_report,
)
from sandbox.probe import ProbeFiles, probe_names, run_probes
from sandbox.progress import OnEvent
from sandbox.published import measure_published, reported_score
from sandbox.scoring import TokenBytes, read_byte_sidecar, score
from sandbox.shards import ShardFormatError, load_tokens, shard_paths, sidecar_paths
from sandbox.spec import IntegrityCheck, Limits, Phase, ProbeKind, RunResult, RunSpec, RunStatus
from sandbox.steps import steps_note, steps_reached

# GOLF_OUT folder and log name of each phase under ``spec.out_dir`` (see the layout above).
_PHASE_FOLDERS = {Phase.TRAIN: "train", Phase.EVAL: "eval", Phase.ALL: "run"}
MakeInvocation = Callable[..., PhaseInvocation]


def run(spec: RunSpec, on_event: OnEvent | None = None, *, backend: Backend | None = None) -> RunResult:
    """Run ``spec`` to a :class:`RunResult`; never raises for anything the candidate does.

    ``on_event`` gets a :class:`ProgressEvent` per curve line while training; returning a :class:`StopRequest`
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
    sidecars = sidecar_paths(spec.data.dataset_dir)
    target_bytes = None
    if sidecars:  # the dataset counts its own bytes (a transformed text, e.g. CaseOps): score with them
        try:
            target_bytes = read_byte_sidecar(sidecars, val_files, val_tokens, token_bytes)
        except (OSError, ShardFormatError, ValueError) as exc:
            raise HarnessError(
                f"byte sidecar of {spec.data.dataset_dir}: {exc}",
                hint="rebuild the sidecar with the dataset it belongs to, or remove it",
            ) from exc
    if backend is None:
        settings = {"image": spec.docker_image} if spec.backend == "docker" else {}
        backend = get_backend(spec.backend, **settings)
    data_before = fingerprint([*val_files, Path(spec.data.tokenizer_path)])

    _prepare_out_dir(out)
    knob_env = {**spec.knobs, "SEED": str(spec.seed)}
    account = Account()
    limits = spec.limits

    def invocation(phase: Phase, *, probe: ProbeFiles | None = None) -> PhaseInvocation:
        """One phase's files, folders and wall-clock limit; ``all`` gets both the train and the eval
        share. A probe is an eval phase on the probe's stream, with its own folder and log."""
        trains, evaluates = phase is not Phase.EVAL, phase is not Phase.TRAIN
        name = probe.name if probe is not None else _PHASE_FOLDERS[phase]
        wall_seconds = (
            (limits.train_seconds if trains else 0.0)
            + (limits.eval_seconds if evaluates else 0.0)
            + limits.startup_grace_seconds
        )
        eval_files = list(probe.shards) if probe is not None else val_files
        if spec.phases == "published" and probe is None:  # a record reads the sidecar itself
            eval_files = [*eval_files, *sidecars]
        return PhaseInvocation(
            phase=phase,
            program_dir=Path(spec.program_dir),
            entry=spec.entry,
            data_files=tuple((train_files if trains else []) + (eval_files if evaluates else [])),
            tokenizer_path=Path(spec.data.tokenizer_path),
            artifact_dir=out / "artifact",
            out_dir=out / name,
            log_path=out / f"{name}.log",
            knob_env=knob_env,
            limits=limits,
            wall_timeout_seconds=wall_seconds,
            nproc=spec.nproc,
            gpus=spec.gpus,
            check_positions_path=probe.positions if probe is not None else None,
            eval_seq_len=spec.eval_seq_len if evaluates else None,
            label=spec.label,
            extra={"docker_image": spec.docker_image} if spec.backend == "docker" else {},
        )

    plans = {"all": _run_single_process, "split": _run_split, "published": _run_published}
    eval_out = plans[spec.phases](invocation, backend, on_event, account, entry_path, limits)

    val_bpb = val_loss = None
    self_reported = spec.phases == "published"
    if self_reported and not account.failed:
        reported = reported_score(account.log_path)
        if reported is None:
            account.fail(RunStatus.INVALID, "the program's log names no val_bpb: nothing to report")
        else:
            val_bpb, val_loss = reported.val_bpb, reported.val_loss
            account.notes.append(f"self-reported score, from the program's log: {reported.line[:200]}")
    elif not account.failed:
        scored = _score(spec, eval_out, val_tokens, token_bytes, account, target_bytes)
        if scored is not None:
            nll, val_bpb, val_loss = scored
            run_probes(
                spec,
                invocation,
                backend,
                eval_out / "val_nll.f32",
                nll,
                val_tokens,
                train_files,
                token_bytes,
                account,
            )
    # The sandboxes mount these read-only; a program that still changed them (an unconfined local
    # run) fails, and the data's failure outranks any other: every later score is at stake.
    if not account.failed and fingerprint(sorted((out / "artifact").rglob("*"))) != account.artifact_digest:
        account.fail_check(
            IntegrityCheck.DATA, "the artifact changed after it was measured, during evaluation"
        )
    if fingerprint([*val_files, Path(spec.data.tokenizer_path)]) != data_before:
        account.override_check(
            IntegrityCheck.DATA,
            f"the validation shards or the tokenizer under {spec.data.dataset_dir} changed during this run; "
            "every later score is wrong until they are restored (rebuild or fetch the dataset)",
        )
    if account.failed:
        val_bpb = val_loss = None
    if account.artifact is not None:  # with its sibling modules; as the wrapper the harness builds, if asked
        code = counted_code_bytes(entry_path, spec.code_bytes)
        account.artifact = account.artifact.model_copy(update={"code": code})
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
    steps, mismatch = steps_reached(account.program.steps, account.curve)
    for note in (mismatch, steps_note(account.status, steps, spec.planned_steps, step_bound=spec.step_bound)):
        if note:
            account.notes.append(note)
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
        steps=steps,
        steps_planned=spec.planned_steps,
        step_bound=spec.step_bound,
        curve=account.curve,
        log_path=account.log_path,
        error_excerpt=account.error_excerpt,
        suspicious=implausibility(spec.plausibility, val_bpb) if account.status is RunStatus.OK else "",
        claimed_bpb=val_bpb if self_reported else account.program.claimed_bpb,
        notes=account.notes,
        failed_check=account.failed_check,
        stopped_by=account.stopped_by,
        probes=account.probes,
        self_reported=self_reported,
        printed_bpb=_printed_bpb(out, spec.phases),
    )
    _write_atomically(out / "result.json", result.model_dump_json(indent=2))
    return result


def _printed_bpb(out: Path, phases: str) -> float | None:
    """The last val_bpb the scored evaluation printed (a log line, never the score)."""
    printed = reported_score(out / ("eval.log" if phases == "split" else "run.log"))
    return printed.val_bpb if printed is not None else None


def _run_single_process(
    invocation: MakeInvocation,
    backend: Backend,
    on_event: OnEvent | None,
    account: Account,
    entry_path: Path,
    limits: Limits,
) -> Path:
    """phases="all": one process trains and evaluates, as the challenge runs it. Returns its GOLF_OUT."""
    inv = invocation(Phase.ALL)
    outcome = execute(backend, inv, on_event, account)
    account.curve = read_phase_curve(inv.out_dir, account)
    check_phase(outcome, inv, account)
    if not account.failed:
        account.program = read_report(inv.out_dir / "result.json", True, account)
        measure(entry_path, inv.artifact_dir, account)
        # One process: the harness cannot tell its evaluation from its training, so the eval budget
        # is part of what the timer may leave unaccounted (the split default has no such slack).
        allowance = limits.startup_grace_seconds + limits.eval_seconds
        _check_timer(account, outcome.wall_seconds, limits.train_seconds, allowance)
    return inv.out_dir


def _run_published(
    invocation: MakeInvocation,
    backend: Backend,
    on_event: OnEvent | None,
    account: Account,
    entry_path: Path,
    limits: Limits,
) -> Path:
    """phases="published": one process as the challenge ran it, in a working directory that is kept;
    its bytes are the code plus the compressed model it wrote there (sandbox.published)."""
    inv = invocation(Phase.ALL)
    workdir = inv.out_dir.parent / "work"
    workdir.mkdir()
    inv = dataclasses.replace(inv, workdir=workdir)
    outcome = execute(backend, inv, on_event, account)
    account.train_seconds = outcome.wall_seconds
    account.curve = read_phase_curve(inv.out_dir, account)
    check_phase(outcome, inv, account)
    if not account.failed:
        try:
            account.artifact = measure_published(entry_path, workdir)
        except OutputError as exc:
            account.fail(RunStatus.INVALID, str(exc))
    return inv.out_dir


def _run_split(
    invocation: MakeInvocation,
    backend: Backend,
    on_event: OnEvent | None,
    account: Account,
    entry_path: Path,
    limits: Limits,
) -> Path:
    """phases="split": train, then eval in a fresh process that sees only the artifact and val data."""
    train, evaluation = invocation(Phase.TRAIN), invocation(Phase.EVAL)
    outcome = execute(backend, train, on_event, account)
    account.train_seconds = outcome.wall_seconds
    account.curve = read_phase_curve(train.out_dir, account)
    check_phase(outcome, train, account)
    if not account.failed:
        account.program = read_report(train.out_dir / "result.json", False, account)
        measure(entry_path, train.artifact_dir, account)
    if not account.failed:
        outcome = execute(backend, evaluation, None, account)
        account.eval_seconds = outcome.wall_seconds
        check_phase(outcome, evaluation, account)
    if not account.failed:
        eval_report = read_report(evaluation.out_dir / "result.json", True, account)
        account.program = merge_reports(account.program, eval_report)
        _check_timer(account, account.train_seconds, limits.train_seconds, limits.startup_grace_seconds)
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
    folders, files = (
        ["artifact", "train", "eval", "run", "work"],
        ["train.log", "eval.log", "run.log", "result.json"],
    )
    for kind in ProbeKind:
        name, data, positions = probe_names(kind)
        folders += [name, data]
        files += [f"{name}.log", positions]
    for name in folders:
        shutil.rmtree(out / name, ignore_errors=True)
    for name in files:
        (out / name).unlink(missing_ok=True)
    for name in ("artifact", "train", "eval"):
        (out / name).mkdir()


def _check_timer(
    account: Account, harness_seconds: float | None, limit_seconds: float, allowance_seconds: float
) -> None:
    claimed = account.program.train_seconds
    if account.failed or claimed is None:
        return
    verdict = timer_verdict(
        claimed,
        harness_seconds=harness_seconds,
        limit_seconds=limit_seconds,
        unaccounted_allowance_seconds=allowance_seconds,
    )
    if verdict is not None:
        status, reason = verdict
        account.fail_check(IntegrityCheck.TRAIN_TIME, reason, status)


def _score(
    spec: RunSpec,
    eval_out: Path,
    val_tokens: np.ndarray,
    token_bytes: TokenBytes,
    account: Account,
    target_bytes: np.ndarray | None = None,
) -> tuple[np.ndarray, float, float] | None:
    """The scored NLL (checked against the harness's coverage) and its (val_bpb, val_loss)."""
    report = account.program
    try:
        if report.vocab_size != token_bytes.vocab_size:
            raise OutputError(
                f"result.json says vocab_size {report.vocab_size} but the tokenizer has {token_bytes.vocab_size}"
            )
        if report.eval_seq_len is not None and report.eval_seq_len != spec.eval_seq_len:
            account.notes.append(
                f"result.json says eval_seq_len {report.eval_seq_len}; the harness scored at its own "
                f"{spec.eval_seq_len}"
            )
        nll = read_nll(
            eval_out / "val_nll.f32", num_val_tokens=int(val_tokens.size), eval_seq_len=spec.eval_seq_len
        )
        if target_bytes is not None:
            account.notes.append("bytes counted from the dataset's byte sidecar (fineweb_val_bytes_*.bin)")
        return (nll, *score(nll, val_tokens, token_bytes, target_bytes))
    except CoverageError as exc:
        account.fail_check(IntegrityCheck.COVERAGE, str(exc))
    except (OutputError, ValueError) as exc:
        account.fail(RunStatus.INVALID, str(exc))
    return None


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
