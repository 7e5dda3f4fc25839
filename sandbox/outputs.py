"""Reading and checking what a program left behind (docs/contract.md, "Outputs under $GOLF_OUT").

Everything here treats the program's files as untrusted input: sizes are checked before arrays are
read, NaN and negative values are rejected, and every failure is an :class:`OutputError` whose message
says what was wrong in one line. The runner turns that into ``status=invalid`` with the message as
the reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sandbox.spec import ArtifactBytes, CurvePoint

_LOGSUMEXP_TOLERANCE = 1e-3  # |logsumexp(row)| allowed: float32 rows over a 1k-64k vocabulary
ROW_AGREEMENT_ABS = 1e-3  # |-row[target] - nll| <= abs + rel * nll
ROW_AGREEMENT_REL = 1e-3
_TAIL_BYTES = 256 * 1024  # how much of a log's end is searched for the last traceback
_EXCERPT_CHARS = 3000
_MAX_REPORT_BYTES = 1_000_000  # result.json
_MAX_CURVE_LINE_CHARS = 64 * 1024  # a longer curve "line" is garbage; read in pieces, each skipped
_MAX_CURVE_BYTES = 64 * 1024**2  # the rest of a larger curve file is ignored (and noted as skipped)


class OutputError(ValueError):
    """The program's outputs break the run contract; the message is the ``invalid`` reason."""


class CoverageError(OutputError):
    """The NLL file does not hold exactly the targets the harness's eval sequence length fixes."""


def _written(path: Path) -> bool:
    """Whether the program wrote ``path`` as a regular file. A link is refused, not followed: the
    harness resolves it on the host, so ``val_nll.f32 -> ../eval/val_nll.f32`` would hand a probe the
    scored run's own file."""
    if path.is_symlink():
        raise OutputError(f"{path.name} is a link; the program must write a regular file there")
    return path.is_file()


@dataclass(frozen=True)
class ProgramReport:
    """The fields of the program's ``result.json`` that the harness uses (all of it is only a claim)."""

    eval_seq_len: int | None = None
    vocab_size: int | None = None
    train_seconds: float | None = None
    steps: int | None = None
    claimed_bpb: float | None = None


def read_program_report(path: Path, *, required: bool) -> ProgramReport:
    """Parse ``result.json``. With ``required``, ``vocab_size`` must be present.

    ``eval_seq_len`` is read only to be compared with the harness's own setting (the harness never
    takes coverage from it)."""
    if not _written(path):
        if required:
            raise OutputError(f"the program wrote no {path.name}")
        return ProgramReport()
    with path.open("rb") as f:
        raw = f.read(_MAX_REPORT_BYTES + 1)
    if len(raw) > _MAX_REPORT_BYTES:
        raise OutputError(
            f"{path.name} is over {_MAX_REPORT_BYTES:,} bytes; it should be a small JSON object"
        )
    try:
        data = json.loads(raw.decode("utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        raise OutputError(f"{path.name} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise OutputError(f"{path.name} must hold a JSON object, not {type(data).__name__}")
    report = ProgramReport(
        eval_seq_len=_int_field(data, "eval_seq_len", path.name),
        vocab_size=_int_field(data, "vocab_size", path.name),
        train_seconds=_float_field(data, "train_seconds", path.name),
        steps=_int_field(data, "steps", path.name),
        claimed_bpb=_float_field(data, "val_bpb", path.name, strict=False),
    )
    if required and report.vocab_size is None:
        raise OutputError(f"{path.name} lacks the required integer field 'vocab_size'")
    return report


def _int_field(data: dict, name: str, filename: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
        raise OutputError(f"{filename}: {name} must be an integer, not {value!r}")
    return int(value)


def _float_field(data: dict, name: str, filename: str, *, strict: bool = True) -> float | None:
    value = data.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if value is not None and strict:
        raise OutputError(f"{filename}: {name} must be a finite number, not {value!r}")
    return None


def parse_curve_line(line: str) -> CurvePoint | None:
    """One ``curve.jsonl`` line as a point, or None when it is not a well-formed record."""
    try:
        data = json.loads(line)
        point = CurvePoint(
            step=int(data["step"]), train_loss=float(data["train_loss"]), elapsed_ms=float(data["elapsed_ms"])
        )
    except (ValueError, TypeError, KeyError):
        return None
    if not (math.isfinite(point.elapsed_ms) and not math.isnan(point.train_loss)):
        return None
    return point


def read_curve(path: Path, *, max_points: int = 100_000) -> tuple[list[CurvePoint], int]:
    """All well-formed points of a curve file and how many lines were skipped as malformed (a link
    counts as one skipped line: it is not read)."""
    if path.is_symlink():
        return [], 1
    if not path.is_file():
        return [], 0
    points: list[CurvePoint] = []
    skipped = 0
    consumed = 0
    with path.open("r", encoding="utf-8", errors="replace") as f:
        while line := f.readline(_MAX_CURVE_LINE_CHARS):
            consumed += len(line)
            if consumed > _MAX_CURVE_BYTES:
                skipped += 1
                break
            if not line.strip():
                continue
            point = (
                parse_curve_line(line) if line.endswith("\n") or len(line) < _MAX_CURVE_LINE_CHARS else None
            )
            if point is None:
                skipped += 1
            elif len(points) < max_points:
                points.append(point)
    return points, skipped


def read_nll(path: Path, *, num_val_tokens: int, eval_seq_len: int) -> np.ndarray:
    """The checked NLL file: memory-mapped float32, exactly ``((N-1)//S)*S`` values for the harness's
    ``S``, each finite and non-negative."""
    if not _written(path):
        raise OutputError(f"the program wrote no {path.name}")
    size = path.stat().st_size
    if size % 4:
        raise OutputError(f"{path.name} is {size} bytes, not a whole number of float32 values")
    n = size // 4
    expected = ((num_val_tokens - 1) // eval_seq_len) * eval_seq_len
    if n != expected:
        raise CoverageError(
            f"{path.name} holds {n} values but {num_val_tokens} validation tokens at the harness's "
            f"eval_seq_len {eval_seq_len} need {expected} (every target that fits in whole sequences)"
        )
    nll = np.memmap(path, dtype="<f4", mode="r", shape=(n,)) if n else np.zeros(0, dtype="<f4")
    chunk = 1 << 22
    for start in range(0, n, chunk):
        part = np.asarray(nll[start : start + chunk])
        if not np.isfinite(part).all():
            bad = start + int(np.flatnonzero(~np.isfinite(part))[0])
            raise OutputError(f"{path.name}: NLL at position {bad} is {float(nll[bad])} (NaN or infinite)")
        if (part < 0).any():
            bad = start + int(np.flatnonzero(part < 0)[0])
            raise OutputError(f"{path.name}: NLL at position {bad} is negative ({float(nll[bad]):.6g})")
    return nll


def read_rows(
    path: Path, positions: np.ndarray, vocab_size: int, tokens: np.ndarray, nll: np.ndarray
) -> np.ndarray:
    """The dumped log-prob rows (float64, one per position in ``positions`` order), each checked to be
    a normalized distribution that gives ``nll[p]`` for its target ``tokens[p+1]``.

    This is the check that rejects "probabilities" summing to far more than 1 (CHALLENGE.md: the hashed
    n-gram cache entry whose distribution summed to ~277).
    """
    if positions.size == 0:
        return np.zeros((0, vocab_size))
    if not _written(path):
        raise OutputError(f"the program wrote no {path.name} although {positions.size} positions were asked")
    expected = positions.size * vocab_size * 4
    size = path.stat().st_size
    if size != expected:
        raise OutputError(
            f"{path.name} is {size} bytes; {positions.size} rows of {vocab_size} float32 need {expected}"
        )
    rows = np.fromfile(path, dtype="<f4").reshape(positions.size, vocab_size).astype(np.float64)
    for row, position in zip(rows, positions.tolist(), strict=True):
        if np.isnan(row).any() or np.isposinf(row).any():
            raise OutputError(f"{path.name}: the row for position {position} holds NaN or +inf")
        peak = float(row.max())
        log_total = peak + math.log(float(np.exp(row - peak).sum()))
        if abs(log_total) > _LOGSUMEXP_TOLERANCE:
            raise OutputError(
                f"{path.name}: the row for position {position} is not normalized "
                f"(probabilities sum to {math.exp(log_total):.6g})"
            )
        target = int(tokens[position + 1])
        reported = float(nll[position])
        if abs(-row[target] - reported) > ROW_AGREEMENT_ABS + ROW_AGREEMENT_REL * reported:
            raise OutputError(
                f"{path.name}: at position {position} the row gives NLL {-row[target]:.6g} for the target "
                f"but val_nll.f32 says {reported:.6g}"
            )
    return rows


def measure_artifact(entry_path: Path, artifact_dir: Path) -> ArtifactBytes:
    """Script bytes plus the bytes of every file under the artifact directory.

    Links and special files are refused: a symlink could point at data the eval phase may not read,
    and its own size says nothing about what it stands for.
    """
    model = 0
    if artifact_dir.is_dir():
        for item in sorted(artifact_dir.rglob("*")):
            if item.is_symlink() or not (item.is_file() or item.is_dir()):
                raise OutputError(
                    f"artifact/{item.relative_to(artifact_dir)} is a link or special file; "
                    "only regular files may be left there"
                )
            if item.is_file():
                model += item.stat().st_size
    return ArtifactBytes(code=entry_path.stat().st_size, model=model)


def last_traceback(log_path: Path | None) -> str:
    """The last Python traceback in a log (or its last lines when there is none), for the agent."""
    if log_path is None or not log_path.is_file():
        return ""
    with log_path.open("rb") as f:
        f.seek(max(0, log_path.stat().st_size - _TAIL_BYTES))
        tail = f.read().decode("utf-8", errors="replace")
    start = tail.rfind("Traceback (most recent call last):")
    excerpt = tail[start:] if start >= 0 else "\n".join(tail.splitlines()[-20:])
    excerpt = excerpt.strip()
    if len(excerpt) > _EXCERPT_CHARS:
        excerpt = "...\n" + excerpt[-_EXCERPT_CHARS:]
    return excerpt
