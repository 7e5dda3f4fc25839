"""How a run trained, read from its RunResult: step time, throughput, steps, and its loss curve
against another run's at the same steps. Used by the agent's context and by the findings.

The step time is the slope of ``elapsed_ms`` over the logged steps, so start-up before the first
logged step (compilation, data loading) is left out, as the challenge's own timer leaves out its
warm-up steps (CHALLENGE.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from agent.proposal import CurveSample
from controller.store.gitstore import GitStore
from sandbox.spec import CurvePoint, RunResult

CURVE_SAMPLES = 6  # points of the loss curve the agent is shown


def result_of(store: GitStore, commit: str) -> RunResult | None:
    """The RunResult of a candidate's scored run, from its git note (None when it has none)."""
    note = store.read_note(commit)
    if not note:
        return None
    data = json.loads(note)
    return RunResult.model_validate(data["result"]) if "result" in data else None


def ms_per_step(curve: Sequence[CurvePoint]) -> float | None:
    """Milliseconds per training step over the logged curve; None with no step to measure."""
    if len(curve) >= 2 and curve[-1].step > curve[0].step:
        return (curve[-1].elapsed_ms - curve[0].elapsed_ms) / (curve[-1].step - curve[0].step)
    if curve and curve[-1].step > 0:
        return curve[-1].elapsed_ms / curve[-1].step
    return None


def tokens_per_second(step_ms: float | None, knob_values: Mapping[str, str]) -> float | None:
    """Training tokens per second from the step time and the run's ``TRAIN_BATCH_TOKENS`` knob."""
    batch = knob_values.get("TRAIN_BATCH_TOKENS")
    if step_ms is None or step_ms <= 0 or batch is None:
        return None
    try:
        tokens = float(batch)
    except ValueError:
        return None
    return tokens / (step_ms / 1000.0)


def steps_planned(result: RunResult) -> int | None:
    """The step count the program aimed for, where the RunResult records one."""
    planned = getattr(result, "steps_planned", None)
    return planned if isinstance(planned, int) else None


def steps_reached(result: RunResult) -> int | None:
    """The steps the run trained: what the program reported, else the last logged step."""
    if result.steps is not None:
        return result.steps
    return result.curve[-1].step if result.curve else None


def loss_at(curve: Sequence[CurvePoint], step: int) -> float | None:
    """The training loss at ``step``, interpolated linearly between logged steps; None outside them."""
    for before, after in zip(curve, curve[1:], strict=False):
        if before.step <= step <= after.step:
            if after.step == before.step:
                return after.train_loss
            share = (step - before.step) / (after.step - before.step)
            return before.train_loss + share * (after.train_loss - before.train_loss)
    if curve and curve[-1].step == step:
        return curve[-1].train_loss
    return None


def curve_against(
    curve: Sequence[CurvePoint], other: Sequence[CurvePoint], samples: int = CURVE_SAMPLES
) -> tuple[CurveSample, ...]:
    """Up to ``samples`` evenly spread points of ``curve``, each with ``other``'s loss at that step."""
    if not curve:
        return ()
    last = len(curve) - 1
    picks = sorted({round(i * last / max(samples - 1, 1)) for i in range(samples)})
    return tuple(
        CurveSample(
            step=curve[i].step, train_loss=curve[i].train_loss, grandparent_loss=loss_at(other, curve[i].step)
        )
        for i in picks
    )
