"""Behavioural inertness: a proposal whose CPU smoke run computes bit for bit what its parent's does
changed nothing the smoke run can see, so it goes back to the agent as a repair turn, never to a GPU.

The syntax-tree check of ``sandbox.preflight`` catches comment and docstring edits; this catches the
rest of the empty changes an LLM writes: a dead branch, a variable nothing uses, a setting nothing
reads. It compares ``PreflightReport.behaviour`` (training losses, validation NLL and artifact of the
smoke run) with the parent's, which is run once per parent commit and cached. Two smoke runs of one
program agree only if its schedule follows steps, not the clock, so the smoke run is given
``MAX_WALLCLOCK_SECONDS=0`` wherever the smoke tier caps ``ITERATIONS`` (:func:`deterministic_smoke`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from sandbox import PreflightReport
from sandbox.knobs import Knob

# The official script's names (CHALLENGE.md): a step cap, and the wall-clock cap that keys the lr
# warmdown on time (so two runs of one program differ) unless it is 0.
STEP_CAP, CLOCK_CAP = "ITERATIONS", "MAX_WALLCLOCK_SECONDS"


def deterministic_smoke(env: Mapping[str, str], knobs: list[Knob]) -> dict[str, str]:
    """The smoke run's settings with its schedule keyed on steps, when the tier caps the steps (without
    a cap, turning the clock off could let the run go on until it is killed)."""
    names = {k.name for k in knobs}
    if CLOCK_CAP in names and STEP_CAP in env:
        return {**env, CLOCK_CAP: "0"}
    return dict(env)


def masked_by_smoke(parent: list[Knob], child: list[Knob], smoke_env: Mapping[str, str]) -> set[str]:
    """Knobs whose default the child changes but the smoke tier overrides: the smoke run cannot see
    those changes (a wider MODEL_DIM on a smoke tier that fixes it), so it cannot call them inert."""
    before = {k.name: k.default for k in parent}
    return {k.name for k in child if k.name in smoke_env and before.get(k.name) != k.default}


class ParentBehaviour:
    """The behaviour digest of each parent's smoke run, made once per parent commit."""

    def __init__(self) -> None:
        self._digests: dict[str, str] = {}
        self._lock = threading.Lock()  # several plans for one parent at once still make one run

    def digest(self, commit: str, run_smoke: Callable[[], PreflightReport]) -> str:
        """The digest for ``commit``; ``run_smoke`` runs the parent's smoke run the first time.
        Empty when the parent's own smoke run fails (then nothing is called inert against it)."""
        with self._lock:
            if commit not in self._digests:
                report = run_smoke()
                self._digests[commit] = report.behaviour if report.ok else ""
            return self._digests[commit]

    def __len__(self) -> int:
        return len(self._digests)


def inert_message(smoke_env: Mapping[str, str]) -> str:
    """The repair turn for a change whose smoke run behaved exactly as its parent's did."""
    steps = smoke_env.get(STEP_CAP, "a few")
    return (
        f"Your change did not change behaviour: in the CPU smoke run ({steps} training steps at the smoke "
        "tier's settings) its training losses, validation NLL and artifact are bit-identical to the "
        "parent's. A dead branch, a variable nothing uses or a setting nothing reads changes nothing. "
        "Make a change that alters what the program computes; if it only acts later in training or "
        "at a larger size than the smoke run uses, make it act from the first steps too."
    )
