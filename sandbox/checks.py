"""Judgements on a run's numbers: the program's train timer against the harness clock, and plausibility.

Pure functions of numbers, so each rule is easy to test and to read in one place.
"""

from __future__ import annotations

from sandbox.spec import Plausibility, RunStatus

# The program's own train timer may overshoot the limit by one step's worth (the reference script
# checks the clock between steps); beyond this it ran too long.
TRAIN_TIMER_TOLERANCE_SECONDS = 1.0
TRAIN_TIMER_TOLERANCE_FRACTION = 0.01
# The program's timer runs inside the phase the harness timed; allow for clock granularity only.
TIMER_AGREEMENT_SECONDS = 0.25


def timer_verdict(
    claimed_seconds: float,
    *,
    harness_seconds: float | None,
    limit_seconds: float,
    unaccounted_allowance_seconds: float | None = None,
) -> tuple[RunStatus, str] | None:
    """``(status, reason)`` when the program's train timer cannot be accepted, else None.

    ``harness_seconds`` is the wall clock of the process that trained; of it, everything the timer
    does not claim (start-up, compile warm-up, export; in an ``all`` run also the evaluation) must fit
    in ``unaccounted_allowance_seconds``. Otherwise a program could keep training through the start-up
    grace and claim less: the grace is the most training the timer can hide, so keep it tight.
    """
    allowed = limit_seconds + max(
        TRAIN_TIMER_TOLERANCE_SECONDS, TRAIN_TIMER_TOLERANCE_FRACTION * limit_seconds
    )
    if claimed_seconds < 0:
        return RunStatus.INVALID, f"the program's train timer is negative ({claimed_seconds:.3f} s)"
    if harness_seconds is not None and claimed_seconds > harness_seconds + TIMER_AGREEMENT_SECONDS:
        return RunStatus.INVALID, (
            f"program timer disagrees with the harness: it claims {claimed_seconds:.2f} s of training "
            f"but the phase ran {harness_seconds:.2f} s"
        )
    if (
        harness_seconds is not None
        and unaccounted_allowance_seconds is not None
        and harness_seconds - claimed_seconds > unaccounted_allowance_seconds + TIMER_AGREEMENT_SECONDS
    ):
        return RunStatus.INVALID, (
            f"the phase ran {harness_seconds:.1f} s but the program's timer claims {claimed_seconds:.1f} s "
            f"of training: {harness_seconds - claimed_seconds:.1f} s unaccounted for, more than the "
            f"{unaccounted_allowance_seconds:.0f} s allowed for start-up, warm-up and export"
        )
    if claimed_seconds > allowed:
        return RunStatus.TIMEOUT, (
            f"the program's train timer reads {claimed_seconds:.1f} s, over the {limit_seconds:.0f} s limit"
        )
    return None


def implausibility(plausibility: Plausibility, val_bpb: float | None) -> str:
    """Why an ok result looks too good to be true, or "" (the status stays ok; the controller decides).

    Judged only against the harness's own numbers: the floor, and the parent's and the seed program's
    harness-measured results on the same tier. Nothing the candidate wrote (its curve, its claims)
    enters, so a program that reports a train loss of 0 cannot make its own NLL of 0 look plausible.
    """
    if val_bpb is None:
        return ""
    reasons = []
    if val_bpb < plausibility.floor_bpb:
        reasons.append(
            f"val_bpb {val_bpb:.4f} is below {plausibility.floor_bpb}, which no model of this size has come near"
        )
    references = (
        ("the parent's", plausibility.parent_bpb, plausibility.max_gain_over_parent_bpb),
        ("the seed program's", plausibility.seed_bpb, plausibility.max_gain_over_seed_bpb),
    )
    for whose, reference, max_gain in references:
        if reference is not None and val_bpb < reference - max_gain:
            reasons.append(f"val_bpb {val_bpb:.4f} beats {whose} {reference:.4f} by more than {max_gain}")
    return "; ".join(reasons)
