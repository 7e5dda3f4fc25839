"""A program run as the challenge published it: no run contract, its score read from its own log.

Challenge records train and evaluate in one process, write their compressed model into the working
directory (``final_model.<scheme>.ptz``) beside the raw checkpoint, and print their score on a
final line such as ``final_int8_zlib_roundtrip_exact val_loss:2.07269931 val_bpb:1.22436570``. The
harness cannot recompute that score (there is no per-token NLL file), so a published run measures
what it can (wall time, the code and compressed-model bytes, the log) and reports the program's own
number as *self-reported*: shown, never a parent of record, never verified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sandbox.outputs import OutputError
from sandbox.spec import ArtifactBytes

# What counts as the model: the compressed files a record writes ("final_model.int8.ptz", ...). The
# raw checkpoint beside them (final_model.pt) is a by-product, as in the challenge's byte count.
MODEL_PATTERN = "*.ptz"
_SCORE = re.compile(r"val_bpb\s*[:=]\s*([0-9]+(?:\.[0-9]+)?)")
_LOSS = re.compile(r"val_loss\s*[:=]\s*([0-9]+(?:\.[0-9]+)?)")


@dataclass(frozen=True)
class ReportedScore:
    """The score a program printed: the last log line that names a ``val_bpb``."""

    val_bpb: float
    val_loss: float | None
    line: str


def reported_score(log_path: Path | None) -> ReportedScore | None:
    """The program's final reported score, or ``None`` when its log names none."""
    if log_path is None or not log_path.is_file():
        return None
    found: ReportedScore | None = None
    with log_path.open(encoding="utf-8", errors="replace") as log:
        for line in log:
            score = _SCORE.search(line)
            if score is None:
                continue
            loss = _LOSS.search(line)
            found = ReportedScore(float(score.group(1)), float(loss.group(1)) if loss else None, line.strip())
    return found


def measure_published(entry_path: Path, workdir: Path) -> ArtifactBytes:
    """The program's bytes plus its compressed model files (``*.ptz``) in its working directory.

    Raises :class:`OutputError` when it wrote none, or when one is a link (its size would say nothing
    about what it stands for)."""
    models = sorted(workdir.rglob(MODEL_PATTERN)) if workdir.is_dir() else []
    if not models:
        raise OutputError(
            f"the program wrote no compressed model ({MODEL_PATTERN}) in its working directory; "
            "a published run's bytes are its code plus that file"
        )
    for model in models:
        if model.is_symlink() or not model.is_file():
            raise OutputError(f"{model.name} is a link or special file; the model must be a regular file")
    return ArtifactBytes(code=entry_path.stat().st_size, model=sum(m.stat().st_size for m in models))
