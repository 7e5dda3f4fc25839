"""Steps reached against steps planned (sandbox.steps): the count the harness records, checked
against the program's curve, and whether a run was cut short of its plan."""

from __future__ import annotations

import pytest

from sandbox import RunStatus, run
from sandbox.spec import CurvePoint, RunResult, StepExtent
from sandbox.steps import steps_note, steps_reached


def curve(*steps: int) -> list[CurvePoint]:
    return [CurvePoint(step=s, train_loss=1.0, elapsed_ms=float(s)) for s in steps]


def test_a_claim_past_the_curve_records_the_curves_last_step_with_a_note():
    reached, note = steps_reached(80, curve(10, 20, 30, 40, 52))
    assert reached == 52
    assert "claims 80 steps" in note and "last logged step is 52" in note


def test_agreeing_counts_and_a_missing_side_need_no_note():
    assert steps_reached(52, curve(50, 52)) == (52, "")
    assert steps_reached(None, curve(1, 2, 3)) == (3, "")
    assert steps_reached(7, []) == (7, "")  # no curve (TRAIN_LOG_EVERY=0): the claim is all there is
    assert steps_reached(None, []) == (None, "")


@pytest.mark.parametrize(
    ("status", "reached", "planned", "extent"),
    [
        (RunStatus.OK, 80, 80, StepExtent.PLANNED),
        (RunStatus.OK, 52, 80, StepExtent.CUT),
        (RunStatus.OVER_SIZE, 52, 80, StepExtent.CUT),
        (RunStatus.OK, 90, 80, StepExtent.OVER),
        (RunStatus.OK, 52, None, None),  # no plan known: nothing to compare with
        (RunStatus.PRUNED, 40, 80, None),  # the harness stopped it: the status says why
        (RunStatus.CRASHED, 3, 80, None),
    ],
)
def test_step_extent_compares_reached_with_planned_for_runs_that_trained_out(
    status, reached, planned, extent
):
    val_bpb = 2.0 if status in (RunStatus.OK, RunStatus.OVER_SIZE) else None
    result = RunResult(status=status, val_bpb=val_bpb, steps=reached, steps_planned=planned)
    assert result.step_extent is extent


def test_notes_say_why_a_run_is_not_comparable():
    assert steps_note(RunStatus.OK, 80, 80, step_bound=True) == ""
    bound = steps_note(RunStatus.OK, 52, 80, step_bound=True)
    assert "52 of 80" in bound and "not comparable" in bound
    capped = steps_note(RunStatus.OK, 52, 80, step_bound=False)
    assert "52 of 80" in capped and "wall-clock cap" in capped and "equal training time" in capped
    assert "past the 80 planned" in steps_note(RunStatus.OK, 90, 80, step_bound=False)
    timeout = steps_note(RunStatus.TIMEOUT, 40, 80, step_bound=True)
    assert "safety net" in timeout and "ITERATIONS" in timeout


@pytest.mark.parametrize("phases", ["split", "all"])
def test_a_program_claiming_more_steps_than_its_curve_shows_is_recorded_at_its_curve(make_spec, phases):
    result = run(make_spec("claims_more_steps", phases=phases, planned_steps=4))
    assert result.status is RunStatus.OK, (result.reason, result.error_excerpt)
    assert (result.steps, result.steps_planned, result.step_extent) == (4, 4, StepExtent.PLANNED)
    assert any("claims 100 steps" in note for note in result.notes), result.notes


def test_a_run_short_of_its_planned_steps_is_recorded_as_cut(make_spec):
    # The unigram trainer always trains 4 steps: planned 6, it stops short.
    result = run(make_spec(planned_steps=6, step_bound=True))
    assert result.status is RunStatus.OK, (result.reason, result.error_excerpt)
    assert (result.steps, result.steps_planned, result.step_bound) == (4, 6, True)
    assert result.step_extent is StepExtent.CUT
    assert any("trained 4 of 6 planned steps" in note for note in result.notes), result.notes
    stored = RunResult.model_validate_json((result.log_path.parent / "result.json").read_text())
    assert stored.step_extent is StepExtent.CUT  # the note the git store keeps says so too
