"""Turn a candidate into a records folder as the challenge expects it (CHALLENGE.md, "Record folder").

The folder holds ``train_gpt.py`` (the candidate's program, byte for byte as committed), the train log
of every seed (``train_seed<seed>.log``), ``submission.json`` and a ``README.md`` written from the
hypothesis chain that led to the candidate and its results. Facts the campaign cannot know (author,
GitHub id, hardware, ...) come from the caller or are left ``null``.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict

from controller.errors import ControllerError
from controller.review.views import Campaign, std_or_none
from controller.search.stats import welch_one_sided
from controller.store.archive import Candidate
from sandbox import code_bytes
from sandbox.code_bytes import CodeBytes

RECORD_ENTRY = "train_gpt.py"  # the challenge's name for the single training script
READABLE_ENTRY = "train_gpt_readable.py"  # beside a self-extracting train_gpt.py, for reviewers (not counted)


@dataclass(frozen=True)
class SubmissionInfo:
    """What the person submitting says about it; ``None`` fields are written as ``null``."""

    author: str | None = None
    github_id: str | None = None
    name: str | None = None
    blurb: str | None = None
    date: str | None = None  # default: today (UTC)
    hardware: str | None = None
    pytorch_version: str | None = None
    base_pr: str | None = None


class SeedResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    seed: int | None
    trial: int
    val_bpb: float
    val_loss: float
    train_seconds: float | None
    bytes_total: int | None
    log: str | None  # the log's file name in the folder


class Submission(BaseModel):
    """``submission.json``: the baseline's fields plus those later records added."""

    model_config = ConfigDict(frozen=True)

    author: str | None
    github_id: str | None
    name: str
    blurb: str
    date: str
    val_loss: float
    val_bpb: float
    bytes_total: int | None
    bytes_code: int
    seeds: list[int | None]
    seed_results: list[SeedResult]
    val_bpb_std: float | None
    p_value: float | None  # one-sided Welch on val_loss vs the parent; None when not testable
    hardware: str | None
    pytorch_version: str | None
    base_pr: str | None


def export_candidate(
    campaign: Campaign, trial: int, dest: Path, info: SubmissionInfo, *, self_extracting: bool = False
) -> Submission:
    """Write the records folder of candidate ``trial`` into ``dest`` (new or empty); return the submission.

    ``self_extracting`` ships ``train_gpt.py`` as an LZMA wrapper of the program (fewer code bytes, as
    records did), beside the readable ``train_gpt_readable.py``; it is written only once the wrapper
    unwraps to the same source and a run of each on the explore tier scores the same
    (controller.review.wrap).

    Raises :class:`ControllerError` when the trial has no scored program, its score is self-reported,
    ``dest`` is not empty, or no seed of the candidate was scored.
    """
    candidate = campaign.candidate(trial)
    if candidate.self_reported:
        raise ControllerError(
            f"trial {trial}'s score is its program's own log line (it ran as published, without the run "
            "contract), so autogolf has no score of its own to put in a submission",
            hint="export a program the harness scored: one that follows the run contract",
        )
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ControllerError(f"{dest} exists and is not an empty folder", hint="export into a new folder")
    entry = campaign.config.campaign.seed_program.name
    files = campaign.store.files_at(candidate.commit)
    if entry not in files:
        raise ControllerError(f"trial {trial}'s commit has no {entry}", hint="check the campaign repository")
    readable_bytes = files[entry].encode("utf-8")  # files_at decoded UTF-8 losslessly: same bytes
    program_bytes = readable_bytes
    counted_wrapped = campaign.config.sandbox.code_bytes is CodeBytes.SELF_EXTRACTING
    self_extracting = self_extracting or counted_wrapped  # its runs counted the wrapper: ship that
    if self_extracting:
        from controller.review.wrap import check_wrapped, run_both

        wrapper = code_bytes.self_extracting(files[entry])
        check_wrapped(files[entry], wrapper)
        run_both(campaign.config, files[entry], wrapper, entry)
        program_bytes = wrapper.encode("utf-8")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / RECORD_ENTRY).write_bytes(program_bytes)
    if self_extracting:
        (dest / READABLE_ENTRY).write_bytes(readable_bytes)
    for rel, text in files.items():  # campaign-listed extra files travel with it
        if rel != entry:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(text.encode("utf-8"))
    seeds = _seed_results(campaign, candidate, dest)
    if not seeds:
        raise ControllerError(f"trial {trial} has no scored seed to export", hint="pick an ok candidate")
    submission = _submission(campaign, candidate, seeds, len(program_bytes), info)
    if (
        self_extracting and not counted_wrapped and submission.bytes_total is not None
    ):  # runs counted the readable one
        shipped = submission.bytes_total - len(readable_bytes) + len(program_bytes)
        submission = submission.model_copy(update={"bytes_total": shipped})
    (dest / "submission.json").write_text(json.dumps(submission.model_dump(), indent=2) + "\n")
    (dest / "README.md").write_text(readme(campaign, candidate, submission), encoding="utf-8")
    return submission


def _seed_results(campaign: Campaign, candidate: Candidate, dest: Path) -> list[SeedResult]:
    """The candidate's own scored run, then every confirm run that added a seed, with their logs."""
    runs = [campaign.record(candidate.trial), *campaign.confirm_runs(candidate.trial)]
    results = []
    for record in runs:
        attrs = record.attrs
        bpb, loss = attrs.val_bpb, attrs.val_loss
        if record.trial_state is not TrialState.COMPLETE or not _finite(bpb) or not _finite(loss):
            continue
        seed = attrs.seed
        log_name = _copy_log(
            campaign.run_dir / "trials" / str(record.number) / "run", dest, seed, record.number
        )
        cand = attrs.candidate or {}
        results.append(
            SeedResult(
                seed=seed,
                trial=record.number,
                val_bpb=float(bpb),
                val_loss=float(loss),
                train_seconds=cand.get("train_seconds", candidate.train_seconds),
                bytes_total=cand.get("artifact_bytes", candidate.artifact_bytes),
                log=log_name,
            )
        )
    return results


def _copy_log(run_dir: Path, dest: Path, seed: int | None, trial: int) -> str | None:
    """Concatenate the run's train and eval logs (or its single run.log) into one file per seed."""
    parts = [run_dir / name for name in ("train.log", "eval.log", "run.log") if (run_dir / name).is_file()]
    if not parts:
        return None
    name = f"train_seed{seed}.log" if seed is not None else f"train_trial{trial}.log"
    with (dest / name).open("wb") as out:
        for path in parts:
            out.write(path.read_bytes())
    return name


def _submission(
    campaign: Campaign, candidate: Candidate, seeds: list[SeedResult], bytes_code: int, info: SubmissionInfo
) -> Submission:
    bpbs = [s.val_bpb for s in seeds]
    losses = [s.val_loss for s in seeds]
    name = info.name or f"{campaign.config.campaign.name}-trial-{candidate.trial}"
    return Submission(
        author=info.author,
        github_id=info.github_id,
        name=name,
        blurb=info.blurb or candidate.hypothesis or name,
        date=info.date or datetime.now(UTC).date().isoformat(),
        val_loss=statistics.fmean(losses),
        val_bpb=statistics.fmean(bpbs),
        bytes_total=max((s.bytes_total for s in seeds if s.bytes_total is not None), default=None),
        bytes_code=bytes_code,
        seeds=[s.seed for s in seeds],
        seed_results=seeds,
        val_bpb_std=std_or_none(bpbs),
        p_value=p_value_vs_parent(campaign, candidate, losses),
        hardware=info.hardware,
        pytorch_version=info.pytorch_version,
        base_pr=info.base_pr,
    )


def p_value_vs_parent(campaign: Campaign, candidate: Candidate, losses: list[float]) -> float | None:
    """One-sided Welch p-value that the candidate's val_loss beats its parent's (CHALLENGE.md's test).

    ``None`` when either side has fewer than two seeds, so no test can be made.
    """
    if candidate.parent_trial is None or candidate.parent_trial not in campaign.archive:
        return None
    parent = campaign.archive.get(candidate.parent_trial)
    if len(losses) < 2 or len(parent.seed_val_losses) < 2:
        return None
    return welch_one_sided(losses, parent.seed_val_losses).p_value


def readme(campaign: Campaign, candidate: Candidate, submission: Submission) -> str:
    """The records folder's README: results, then how the program got here, root first."""
    lines = [
        f"# {submission.name}",
        "",
        submission.blurb,
        "",
        "## Results",
        "",
        f"- val_bpb: **{submission.val_bpb:.4f}**"
        + (f" ± {submission.val_bpb_std:.4f} (sample std)" if submission.val_bpb_std is not None else "")
        + f" over {len(submission.seeds)} seed(s)",
        f"- val_loss: {submission.val_loss:.4f} nats per token",
        f"- artifact: {_bytes(submission.bytes_total)} bytes in total, {submission.bytes_code:,} of them code",
        "- p-value vs parent (one-sided Welch on val_loss): "
        + (
            f"{submission.p_value:.3g}"
            if submission.p_value is not None
            else "not testable (needs ≥ 2 seeds a side)"
        ),
        f"- hardware: {submission.hardware or 'not given'}; tier `{candidate.tier}` of campaign "
        f"`{campaign.config.campaign.name}`",
        "",
        "| seed | trial | val_bpb | val_loss | train s | log |",
        "|---|---|---|---|---|---|",
    ]
    for s in submission.seed_results:
        train = f"{s.train_seconds:.1f}" if s.train_seconds is not None else ""
        lines.append(
            f"| {s.seed} | {s.trial} | {s.val_bpb:.4f} | {s.val_loss:.4f} | {train} | {s.log or ''} |"
        )
    lines += ["", "## How this program came about", ""]
    for step in campaign.lineage(candidate):
        attrs = campaign.record(step.trial).attrs
        bpb = f"{step.val_bpb:.4f} bpb" if step.val_bpb is not None else str(step.status)
        parent = campaign.archive.get(step.parent_trial) if step.parent_trial in campaign.archive else None
        delta = (
            f", {step.val_bpb - parent.val_bpb:+.4f} vs trial {parent.trial}"
            if parent is not None and parent.val_bpb is not None and step.val_bpb is not None
            else ""
        )
        lines.append(f"### Trial {step.trial} ({step.operation}): {step.hypothesis or 'no hypothesis'}")
        lines.append("")
        lines.append(f"Result: {bpb}{delta}.")
        rationale = attrs.rationale.strip()
        if rationale:
            lines += ["", rationale]
        lines.append("")
    knobs = candidate.knob_values
    if knobs:
        lines += ["## Settings the scored run used", "", "```"]
        lines += [f"{name}={value}" for name, value in sorted(knobs.items())]
        lines += ["```", ""]
    lines += [
        "## Reproduce",
        "",
        "```",
        "torchrun --standalone --nproc_per_node=8 train_gpt.py",
        "```",
        "",
        f"Exported by autogolf from commit `{candidate.commit}`.",
        "",
    ]
    return "\n".join(lines)


def _bytes(value: int | None) -> str:
    return f"{value:,}" if value is not None else "unknown"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
