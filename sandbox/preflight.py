"""``preflight``: cheap checks that stop a broken candidate before it costs GPU time.

Stages, in order, each seconds or less (DESIGN.md, "Fidelity ladder": the CPU smoke run catches
crashes before any GPU time is spent): the entry compiles; its knob table parses; the script alone
fits the byte budget; the change is not inert (its syntax tree differs from the parent's once
docstrings and comments are gone); and a real ``run()`` of a tiny configuration ends ``ok``. A passed
report carries ``behaviour``, a digest of what that run computed (its training losses, validation NLL
and artifact), so a caller can tell a change that alters nothing the smoke run sees: the controller
compares it with the parent's (controller.search.inert).

The smoke run sees a staged copy of the dataset whose validation split is cut to its first
``smoke_val_tokens`` tokens: the challenge's 62M validation tokens take a CPU far longer than the
seconds a smoke run has, and a crash in evaluation shows on 64k tokens just as well.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import tempfile
import time
from enum import StrEnum
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from sandbox.errors import HarnessError
from sandbox.knobs import Knob, KnobTableError, parse_knob_table
from sandbox.outputs import read_curve
from sandbox.runner import run
from sandbox.shards import ShardFormatError, read_shard_tokens, shard_paths, write_shard
from sandbox.spec import DataPaths, IntegritySettings, Limits, RunSpec, RunStatus

BOS_ID = 1  # the challenge tokenizers' document-start token (CHALLENGE.md)


class PreflightStage(StrEnum):
    SYNTAX = "syntax"
    KNOBS = "knobs"
    CODE_BYTES = "code_bytes"
    INERT = "inert"
    SMOKE = "smoke"
    PASSED = "passed"


class PreflightReport(BaseModel):
    """``ok`` with ``stage="passed"``, or the first stage that failed and why."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    stage: PreflightStage
    reason: str = ""
    knobs: list[Knob] = []
    code_bytes: int = 0
    seconds: float = 0.0
    log_excerpt: str = ""
    # SHA-256 of the smoke run's training losses, validation NLL and artifact bytes (not its timings):
    # two programs with the same digest computed the same thing on the smoke run. Empty unless passed.
    behaviour: str = ""


def preflight(
    program_dir: Path,
    *,
    entry: str = "train_gpt.py",
    data: DataPaths,
    smoke_knobs: dict[str, str],
    parent_source: str | None = None,
    limits: Limits | None = None,
    backend: str = "local",
    docker_image: str = "autogolf-trainer:latest",
    timeout_seconds: float = 90.0,
    out_dir: Path | None = None,
    smoke_val_tokens: int = 65536,
    eval_seq_len: int = 1024,
    gpus: tuple[int, ...] = (),
) -> PreflightReport:
    """Check a candidate in seconds; a failing candidate is a report, never an exception.

    ``smoke_knobs`` override the program's settings for the smoke run (shrink the model, the steps,
    the batch). ``parent_source`` enables the inert-change check. The smoke run's outputs go to
    ``out_dir`` when given (kept), else to a temporary folder (removed). The smoke run's validation
    split is the first ``smoke_val_tokens`` tokens of the real one, cut before a document start when
    one lies in the second half of that window, scored at ``eval_seq_len`` (the tier's) and checked by
    a short integrity probe, so a look-ahead is caught before any GPU time. Raises :class:`sandbox.errors.HarnessError` only for
    faults of the harness (missing or unreadable data, no backend).
    """
    started = time.monotonic()
    limits = limits or Limits()
    entry_path = Path(program_dir) / entry

    def report(stage: PreflightStage, reason: str = "", **fields: object) -> PreflightReport:
        ok = stage is PreflightStage.PASSED
        return PreflightReport(
            ok=ok, stage=stage, reason=reason, seconds=time.monotonic() - started, **fields
        )

    try:
        raw = entry_path.read_bytes()
    except OSError as exc:
        return report(PreflightStage.SYNTAX, f"cannot read {entry_path}: {exc.strerror}")
    source = raw.decode("utf-8", errors="replace")
    try:
        compile(raw, str(entry_path), "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        return report(PreflightStage.SYNTAX, f"{entry}:{line}: {getattr(exc, 'msg', exc)}")
    try:
        knobs = parse_knob_table(source, filename=entry)
    except KnobTableError as exc:
        return report(PreflightStage.KNOBS, str(exc), code_bytes=len(raw))
    known = {"knobs": knobs, "code_bytes": len(raw)}
    if len(raw) > limits.artifact_bytes:
        return report(
            PreflightStage.CODE_BYTES,
            f"{entry} alone is {len(raw):,} bytes, over the {limits.artifact_bytes:,}-byte artifact limit",
            **known,
        )
    if parent_source is not None and _same_program(source, parent_source):
        return report(
            PreflightStage.INERT,
            "change has no effect: the code is the parent's apart from comments, docstrings and layout",
            **known,
        )
    staging = Path(tempfile.mkdtemp(prefix="autogolf-smoke-data-"))
    try:
        smoke_data = stage_smoke_dataset(data, staging, smoke_val_tokens)
        smoke = _smoke(
            Path(program_dir),
            entry,
            smoke_data,
            smoke_knobs,
            limits,
            backend,
            docker_image,
            timeout_seconds,
            out_dir,
            eval_seq_len,
            gpus,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    failure, behaviour = smoke
    if failure is not None:
        reason, excerpt = failure
        return report(PreflightStage.SMOKE, reason, log_excerpt=excerpt, **known)
    return report(PreflightStage.PASSED, behaviour=behaviour, **known)


def _smoke(
    program_dir: Path,
    entry: str,
    data: DataPaths,
    smoke_knobs: dict[str, str],
    limits: Limits,
    backend: str,
    docker_image: str,
    timeout_seconds: float,
    out_dir: Path | None,
    eval_seq_len: int,
    gpus: tuple[int, ...] = (),
) -> tuple[tuple[str, str] | None, str]:
    """Run the tiny configuration: (None, behaviour digest) when it ended ok, else ((reason, log
    excerpt), "")."""
    # Half the budget each for "training" and "evaluation", no extra grace: the whole smoke run is
    # killed after timeout_seconds. The artifact limit stays, so a script that cannot fit even a
    # tiny model is caught here.
    smoke_limits = limits.model_copy(
        update={
            "train_seconds": timeout_seconds / 2,
            "eval_seconds": timeout_seconds / 2,
            "startup_grace_seconds": 0.0,
        }
    )
    work = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="autogolf-smoke-"))
    try:
        spec = RunSpec(
            program_dir=program_dir,
            entry=entry,
            knobs=dict(smoke_knobs),
            phases="all",
            data=data,
            limits=smoke_limits,
            out_dir=work,
            eval_seq_len=eval_seq_len,
            # A short tail: the smoke split is small, and the probe should cost a fraction of its eval.
            integrity=IntegritySettings(rows=4, tail_tokens=4 * eval_seq_len),
            backend=backend,  # type: ignore[arg-type]  # RunSpec validates the name
            docker_image=docker_image,
            gpus=gpus,  # a GPU smoke tier's one GPU (a CUDA-only program); empty: the CPU
            label="preflight",
        )
        result = run(spec)
        behaviour = behaviour_digest(work) if result.status is RunStatus.OK else ""
    finally:
        if out_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    if result.status is RunStatus.OK:
        return None, behaviour
    return (f"smoke run {result.status.value}: {result.reason}", result.error_excerpt), ""


def behaviour_digest(run_out: Path) -> str:
    """SHA-256 of what a ``phases="all"`` run under ``run_out`` computed: each logged step's training
    loss, the validation NLL file and the artifact's files (names and bytes). Timings are left out."""
    digest = hashlib.sha256()
    points, _ = read_curve(run_out / "run" / "curve.jsonl")
    digest.update(repr([(p.step, p.train_loss) for p in points]).encode())
    nll = run_out / "run" / "val_nll.f32"
    digest.update(nll.read_bytes() if nll.is_file() else b"")
    artifact = run_out / "artifact"
    for path in sorted(artifact.rglob("*")) if artifact.is_dir() else []:
        if path.is_file():
            digest.update(str(path.relative_to(artifact)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def stage_smoke_dataset(data: DataPaths, staging: Path, max_val_tokens: int) -> DataPaths:
    """``data`` with its validation split cut to at most ``max_val_tokens`` tokens, staged in ``staging``.

    The train shards are linked, not copied (hard links, else symlinks across filesystems); the cut
    validation split is one shard with a valid challenge header. When the validation split is already
    that short, ``data`` itself is returned.
    """
    if max_val_tokens < 2:
        raise ValueError(
            f"smoke_val_tokens must be at least 2 (one context and one target), got {max_val_tokens}"
        )
    val_files = shard_paths(data.dataset_dir, "val")
    try:
        head = _read_val_head(val_files, max_val_tokens + 1)
    except (OSError, ShardFormatError) as exc:
        raise HarnessError(f"cannot read validation shards: {exc}", hint="rebuild the dataset") from exc
    if head.size <= max_val_tokens:
        return data
    staging.mkdir(parents=True, exist_ok=True)
    for shard in shard_paths(data.dataset_dir, "train"):
        try:
            os.link(shard, staging / shard.name)
        except OSError:
            (staging / shard.name).symlink_to(shard.resolve())
    write_shard(staging / "fineweb_val_000000.bin", cut_at_document_start(head, max_val_tokens))
    return DataPaths(dataset_dir=staging, tokenizer_path=data.tokenizer_path)


def cut_at_document_start(tokens: np.ndarray, max_tokens: int) -> np.ndarray:
    """The first ``max_tokens`` tokens, ending just before a BOS when one lies in the second half.

    A document cut short would be scored on a truncated tail; ending before a BOS keeps whole
    documents. Looking only in the second half keeps one huge document from shrinking the cut to
    a handful of tokens (then the cut falls mid-document).
    """
    window = tokens[: max_tokens + 1]  # a BOS right after the window still ends it cleanly
    starts = np.flatnonzero(window[max_tokens // 2 :] == BOS_ID) + max_tokens // 2
    end = int(starts[-1]) if starts.size and starts[-1] > 0 else min(max_tokens, tokens.size)
    return tokens[:end]


def _read_val_head(paths: list[Path], count: int) -> np.ndarray:
    """Up to ``count`` tokens from the start of the concatenated shards, reading no more than needed."""
    if not paths:
        raise ShardFormatError("the dataset has no fineweb_val_*.bin shards")
    pieces: list[np.ndarray] = []
    need = count
    for path in paths:
        pieces.append(read_shard_tokens(path, max_tokens=need))
        need -= pieces[-1].size
        if need <= 0:
            break
    return np.concatenate(pieces)


def _same_program(source: str, parent_source: str) -> bool:
    """True when both parse to the same tree once docstrings are dropped (comments never reach the AST)."""
    try:
        return _normalized_dump(source) == _normalized_dump(parent_source)
    except SyntaxError:
        return False  # an unparsable parent cannot make the candidate inert


def _normalized_dump(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            first = body[0].value if body and isinstance(body[0], ast.Expr) else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)
