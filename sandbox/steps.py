"""How many steps a run trained, and what that says about comparing it (RunResult.steps, step_extent).

The count is the program's claim (``result.json`` ``steps``) checked against its curve. The curve is
what the harness watched while the run went (the pruner judged those points); ``result.json`` is
written once at the end. So where both exist and disagree, the curve's last step is recorded and a
note says so: a program cannot look as if it trained its planned steps by claiming them.

Runs are comparable when they trained the same thing: on a step-bound run (its wall-clock cap off,
``RunSpec.step_bound``) the planned steps exactly; otherwise the cap may end training first, and a
run cut at another step compares at equal time only (the challenge's own rule on its 8xH100 tier).
"""

from __future__ import annotations

from sandbox.spec import CurvePoint, RunStatus, StepExtent, step_extent


def steps_reached(claimed: int | None, curve: list[CurvePoint]) -> tuple[int | None, str]:
    """The steps to record and a note when the claim and the curve disagree ("" when they agree)."""
    if not curve:
        return claimed, ""
    logged = max(point.step for point in curve)
    if claimed is None or claimed == logged:
        return logged, ""
    return logged, (
        f"result.json claims {claimed} steps but curve.jsonl's last logged step is {logged}: {logged} "
        "recorded (the curve is what the harness watched; the contract logs the last step trained)"
    )


def steps_note(status: RunStatus, reached: int | None, planned: int | None, *, step_bound: bool) -> str:
    """A harness remark for a run that did not train its planned steps ("" for one that did)."""
    if status is RunStatus.TIMEOUT and step_bound and planned is not None:
        return (
            f"steps bound this run ({planned} planned, its wall-clock cap off) and it ran past the "
            "harness's train_seconds, which is only the safety net: raise the tier's train_seconds "
            "or lower its ITERATIONS"
        )
    extent = step_extent(status, reached, planned)
    if extent is StepExtent.CUT:
        if step_bound:
            return (
                f"trained {reached} of {planned} planned steps although steps bound this run (its "
                "wall-clock cap was off): not comparable with runs that trained all of them"
            )
        return (
            f"trained {reached} of {planned} planned steps: cut short (its wall-clock cap may end "
            "training first), so it compares with other runs at equal training time, not equal steps"
        )
    if extent is StepExtent.OVER:
        return (
            f"trained {reached} steps, past the {planned} planned (ITERATIONS): not comparable with runs "
            "that stopped there"
        )
    return ""
