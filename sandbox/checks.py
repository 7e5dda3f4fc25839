"""Judgements on a run's numbers: the program's train timer against the harness clock, and plausibility.

Pure functions of numbers, so each rule is easy to test and to read in one place.
"""

from __future__ import annotations

from sandbox.spec import CurvePoint, RunSpec, RunStatus

# The program's own train timer may overshoot the limit by one step's worth (the reference script
# checks the clock between steps); beyond this it ran too long.
TRAIN_TIMER_TOLERANCE_SECONDS = 1.0
TRAIN_TIMER_TOLERANCE_FRACTION = 0.01
# The program's timer runs inside the phase the harness timed; allow for clock granularity only.
TIMER_AGREEMENT_SECONDS = 0.25


def timer_verdict(
    claimed_seconds: float, *, harness_seconds: float | None, limit_seconds: float
) -> tuple[RunStatus, str] | None:
    """``(status, reason)`` when the program's train timer cannot be accepted, else None."""
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
    if claimed_seconds > allowed:
        return RunStatus.TIMEOUT, (
            f"the program's train timer reads {claimed_seconds:.1f} s, over the {limit_seconds:.0f} s limit"
        )
    return None


def implausibility(
    spec: RunSpec, val_bpb: float | None, val_loss: float | None, curve: list[CurvePoint]
) -> str:
    """Why an ok result looks too good to be true, or "" (the status stays ok; the controller decides)."""
    reasons = []
    if val_loss is not None and curve:
        final_train = curve[-1].train_loss
        if val_loss < final_train - spec.max_val_below_train_nats:
            reasons.append(
                f"val_loss {val_loss:.4f} is more than {spec.max_val_below_train_nats} nats below the final "
                f"train loss {final_train:.4f}"
            )
    reference = spec.reference_bpb
    if val_bpb is not None and reference is not None and val_bpb < reference - spec.max_plausible_gain_bpb:
        reasons.append(
            f"val_bpb {val_bpb:.4f} beats the parent's {reference:.4f} by more than {spec.max_plausible_gain_bpb}"
        )
    return "; ".join(reasons)
