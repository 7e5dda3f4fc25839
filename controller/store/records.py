"""How a trial's outcome is written down, and how the archive is rebuilt from what was written.

The study is the index (one trial per attempt, its state and value); each trial's
:class:`~controller.store.trial_attrs.TrialAttrs` ``candidate`` holds the
:class:`~controller.store.archive.Candidate` fields, and ``confirm_of`` marks a confirm run that adds
a seed to an earlier candidate. The git store holds the programs and the full
RunResults as notes. Rebuilding the archive reads only the study, so it is one query on resume.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from optuna.trial import TrialState
from pydantic import TypeAdapter

from controller.store.archive import Archive, Candidate, Operation
from controller.store.study import TrialRecord
from sandbox.spec import RunResult, RunStatus

# Set from the promotion marks when the archive is rebuilt, never stored with the candidate.
_DERIVED = {"confirmed"}
_CANDIDATE = TypeAdapter(Candidate)


def candidate_attrs(candidate: Candidate) -> dict[str, Any]:
    """The JSON-safe form of a candidate, stored on its trial (every field but the derived ones)."""
    return _CANDIDATE.dump_python(candidate, mode="json", exclude=_DERIVED)


def candidate_from_attrs(attrs: Mapping[str, Any], *, confirmed: bool = False) -> Candidate:
    """The candidate :func:`candidate_attrs` stored; fields an older record lacks take their defaults."""
    data = {key: value for key, value in attrs.items() if key not in _DERIVED}
    if data.get("seed_bpbs"):
        data["val_bpb"] = None  # the mean of the seeds, recomputed exactly as when it was made
    return dataclasses.replace(_CANDIDATE.validate_python(data), confirmed=confirmed)


def candidate_from_result(
    *,
    trial: int,
    commit: str,
    parent_trial: int | None,
    tier: str,
    operation: Operation,
    hypothesis: str,
    result: RunResult,
    knob_values: Mapping[str, Any],
    second_parent_trial: int | None = None,
) -> Candidate:
    """The archive's record of a freshly scored run (``second_parent_trial``: a stack's)."""
    ok = result.status is RunStatus.OK
    total_bytes = result.artifact.total if result.artifact else None
    return Candidate(
        trial=trial,
        commit=commit,
        parent_trial=parent_trial,
        tier=tier,
        status=result.status,
        seed_bpbs=(result.val_bpb,) if ok and result.val_bpb is not None else (),
        seed_val_losses=(result.val_loss,) if ok and result.val_loss is not None else (),
        artifact_bytes=total_bytes,
        train_seconds=result.train_seconds,
        feasible=result.status is not RunStatus.OVER_SIZE,
        hypothesis=hypothesis,
        operation=operation,
        suspicious=result.suspicious,
        verified=result.verified,
        self_reported=result.self_reported,
        knob_values={k: str(v) for k, v in knob_values.items()},
        second_parent_trial=second_parent_trial,
        steps=result.steps,
        steps_planned=result.steps_planned,
    )


def with_extra_seed(candidate: Candidate, bpb: float, val_loss: float) -> Candidate:
    """``candidate`` with one more seed's result (a confirm run of the same program and tier)."""
    return dataclasses.replace(
        candidate,
        val_bpb=None,
        seed_bpbs=(*candidate.seed_bpbs, bpb),
        seed_val_losses=(*candidate.seed_val_losses, val_loss),
    )


def with_confirmed(candidate: Candidate) -> Candidate:
    return dataclasses.replace(candidate, confirmed=True)


def with_verified(candidate: Candidate) -> Candidate:
    """``candidate`` once a run of its program passed the full integrity probe."""
    return dataclasses.replace(candidate, verified=True)


def superseded(candidate: Candidate, by: int) -> Candidate:
    """``candidate`` once trial ``by`` (its ablation, without a part that carries no gain) took its
    place as the program of record: out of the parent pool, no longer a parent of record."""
    return dataclasses.replace(candidate, superseded_by=by, confirmed=False)


def discredited(candidate: Candidate, reason: str) -> Candidate:
    """``candidate`` once a later run of its program failed an integrity check: out of the parent pool
    for good, and no longer a parent of record."""
    return dataclasses.replace(candidate, suspicious=reason, discredited=True, confirmed=False)


def rebuild_archive(trials: Iterable[TrialRecord]) -> Archive:
    """Replay the study's finished trials in order into an archive (candidates, seeds, promotions)."""
    archive = Archive()
    for record in sorted(trials, key=lambda r: r.number):
        if not record.trial_state.is_finished():
            continue
        attrs = record.attrs
        target = attrs.confirm_of
        if target is not None:
            bpb, loss = attrs.val_bpb, attrs.val_loss
            told = record.trial_state is TrialState.COMPLETE and bpb is not None and loss is not None
            if told and target in archive:
                archive.add(with_extra_seed(archive.get(target), bpb, loss))
        elif attrs.candidate is not None:
            archive.add(candidate_from_attrs(attrs.candidate, confirmed=attrs.promoted))
        verifies = attrs.verifies
        if verifies is not None and verifies in archive:
            archive.add(with_verified(archive.get(verifies)))
            if target is not None and target in archive:
                archive.add(with_verified(archive.get(target)))
        if attrs.discredits is not None:
            for trial in attrs.discredits.trials:
                if trial in archive:
                    archive.add(discredited(archive.get(trial), attrs.discredits.reason))
        drop = attrs.drops
        if drop is not None and drop.ablation in archive and drop.win in archive:
            archive.add(with_confirmed(archive.get(drop.ablation)))
            archive.add(superseded(archive.get(drop.win), drop.ablation))
        promotes = attrs.promotes
        if promotes is not None and promotes in archive:
            archive.add(with_confirmed(archive.get(promotes)))
    return archive


def result_note(result: RunResult, extra: Mapping[str, Any]) -> str:
    """The git note of a candidate: the full RunResult plus what the controller knows about the run."""
    return json.dumps({"result": result.model_dump(mode="json"), **extra}, indent=2, sort_keys=True)
