"""The steps a run trained against its plan, as leaderboard, show and report present them.

``80/80`` trained its plan; ``52/80 cut`` stopped short of it and ``90/80 over`` went past it, and
neither compares with the runs that trained the plan (sandbox.steps). On a step-bound tier (cpu by
default) a cut run is an anomaly; on a wall-clock tier it is the challenge's rule, and such runs
compare at equal training time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from controller.store.archive import Candidate
from sandbox.spec import RunStatus, StepExtent, step_extent

LEGEND = (
    "steps: reached/planned (ITERATIONS). cut: training stopped before its planned steps; over: it "
    "went past them. Either way the run is not comparable with runs that trained their plan: on a "
    "step-bound tier (cpu) they trained something else; on a wall-clock tier (the challenge's rule) "
    "they compare at equal training time only."
)


class StepCount(BaseModel):
    """Reached and planned steps of one run, and what they say (None where unknown)."""

    model_config = ConfigDict(frozen=True)

    reached: int | None = None
    planned: int | None = None
    extent: StepExtent | None = None
    step_bound: bool = False  # the run's wall-clock cap was off: steps alone bound it

    @classmethod
    def of_candidate(cls, candidate: Candidate, *, step_bound: bool) -> StepCount:
        return cls(
            reached=candidate.steps,
            planned=candidate.steps_planned,
            extent=candidate.step_extent,
            step_bound=step_bound,
        )

    @classmethod
    def of_result(cls, result: Mapping[str, Any]) -> StepCount:
        """From a RunResult as its git note or result.json holds it (older ones lack the plan)."""
        reached, planned = _count(result.get("steps")), _count(result.get("steps_planned"))
        try:
            status = RunStatus(result.get("status"))
        except ValueError:
            return cls(reached=reached, planned=planned)
        return cls(
            reached=reached,
            planned=planned,
            extent=step_extent(status, reached, planned),
            step_bound=result.get("step_bound") is True,
        )

    @property
    def comparable(self) -> bool:
        """False when the run trained another number of steps than planned."""
        return self.extent in (None, StepExtent.PLANNED)

    @property
    def label(self) -> str:
        """``80/80``, ``52/80 cut``, ``90/80 over``, ``52`` (no plan) or "" (no count)."""
        if self.reached is None:
            return ""
        planned = f"/{self.planned}" if self.planned is not None else ""
        return f"{self.reached}{planned}" + ("" if self.comparable else f" {self.extent}")

    def explain(self) -> str:
        """One line for ``show``: the count and, for a run that is not comparable, why."""
        if self.reached is None:
            return ""
        if self.planned is None:
            return f"{self.reached} steps (no planned count known)"
        text = f"{self.reached} of {self.planned} planned"
        if self.extent is StepExtent.CUT:
            why = (
                "stopped short although steps bound it (its wall-clock cap was off)"
                if self.step_bound
                else "cut short: its wall-clock cap ended training first"
            )
            return f"{text} · {why}; not comparable with runs that trained all of them"
        if self.extent is StepExtent.OVER:
            return f"{text} · went past them; not comparable with runs that stopped there"
        return text + (" · bound by steps" if self.step_bound else "")


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
