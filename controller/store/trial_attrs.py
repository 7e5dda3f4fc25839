"""What a trial records beside its Optuna state: one model, serialised here and nowhere else.

Each field is one Optuna user attribute of the same name, so the study stays readable by
optuna-dashboard and by hand. Writers build a :class:`TrialAttrs` with only the fields they set and
the study stores :meth:`TrialAttrs.written` (the fields set, in JSON form); readers get the whole
model back from :meth:`TrialAttrs.read`, unset fields at their defaults. A misspelt field is an
error when it is written, not a silent miss when it is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from controller.errors import StudyError
from controller.store.archive import Operation
from sandbox.spec import RunStatus


class Discredit(BaseModel):
    """On a confirm trial that failed an integrity check: the programs it discredits, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trials: tuple[int, ...]
    reason: str


class AblationDrop(BaseModel):
    """On a confirm trial whose runs settled an ablation (controller.search.ablation): the part of
    ``win``'s change that ``ablation`` left out carries no gain, so ``ablation`` (the smaller change)
    is a parent of record in ``win``'s place."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ablation: int
    win: int
    part: str


class AdoptionCheck(BaseModel):
    """On an adopt trial: the harness's BPB beside the one the ported program printed in the same run,
    and whether they agreed within the campaign's tolerance (only then is the port a root)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    port: str  # "deterministic" (importer.adopt) or "llm" (prompts/task_adopt.txt)
    harness_bpb: float | None
    printed_bpb: float | None
    tolerance: float
    accepted: bool

    def summary(self) -> str:
        """One line for ``show``: the verdict and both numbers."""
        verdict = "accepted" if self.accepted else "not accepted"
        numbers = " · ".join(
            f"{label} {value:.8f}"
            for label, value in (("harness", self.harness_bpb), ("printed", self.printed_bpb))
            if value is not None
        )
        return f"{self.port} port {verdict}: {numbers or 'no score'} (tolerance {self.tolerance:.0e})"


class TrialAttrs(BaseModel):
    """Every user attribute a trial of a campaign may carry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Written by CampaignStudy.ask: what the trial runs. knob_values comes last and its absence marks
    # an ask that never finished (recovery reads such a trial as one that never ran).
    tier: str = ""
    operation: Operation | None = None
    parent_trial: int | None = None
    parent_commit: str | None = None
    knob_values: dict[str, Any] | None = None  # every knob setting the run used, sampled and fixed
    search_space: dict[str, tuple[str, str]] = {}  # knob -> (Optuna param, distribution JSON)
    knob_setting: str | None = None  # (parent, tier, values) of a sampled trial: never drawn twice
    # Stack, ablate and adopt (controller.search): the second parent of a stack (its change replayed
    # onto parent_trial's program), the part of parent_trial's change an ablation leaves out, and
    # the foreign trial an adoption ports.
    second_parent: int | None = None
    ablated_part: str | None = None
    adopts: int | None = None
    adoption: AdoptionCheck | None = None
    smoke_skipped: str = ""  # why no preflight smoke run checked the program (it needs CUDA, ...)

    # The plan: why the trial exists and what it cost to propose.
    hypothesis: str = ""
    rationale: str = ""
    proposer: str = ""
    seed: int | None = None
    tokens: int = 0
    cost_usd: float | None = None
    turns: int | None = None  # on a proposal the agent gave up on
    new_knobs: tuple[str, ...] = ()
    scoring_change: str = ""  # non-empty: the edit changes what the program writes to the scored files
    published: bool = False  # the program has no run contract: run as published, score self-reported
    request_id: str | None = None  # on every trial made for a person's request
    hypothesis_id: str | None = None  # also on trials implementing a queued hypothesis

    # The outcome.
    status: RunStatus | None = None
    status_reason: str = ""
    val_bpb: float | None = None
    val_loss: float | None = None
    candidate: dict[str, Any] | None = None  # controller.store.records.candidate_attrs
    candidate_commit: str | None = None
    note_markdown: str = ""  # the note optuna-dashboard shows

    # Confirm runs and promotion marks (controller.store.records rebuilds the archive from them).
    confirm_of: int | None = None  # a confirm run adding a seed to this earlier record
    promoted: bool = False  # the seed program's own trial: the first parent of record
    promotes: int | None = None  # this confirm run's Welch test made that trial a parent of record
    verifies: int | None = None  # this confirm run passed the full integrity probe for that trial
    discredits: Discredit | None = None
    drops: AblationDrop | None = None  # this confirm run's ablation verdict dropped a part

    # Recovery (controller.store.study): a re-run, and why a trial was not re-run.
    requeued_from: int | None = None  # the trial this one re-runs
    original_trial: int | None = None  # the first trial of its chain
    lost_runs: int = 0  # attempts of this experiment that lost their run
    gave_up: bool = False  # not re-run: its runs were lost too often
    never_ran: bool = False  # its process died while asking it

    # Workers (controller.workers): who asked the trial.
    worker: str | None = None
    worker_name: str | None = None

    @classmethod
    def read(cls, user_attrs: Mapping[str, Any], *, trial: int | None = None) -> Self:
        """The attributes a study holds for a trial. Keys this model does not know (an attribute set
        by another tool) are left out; a known key with a value of the wrong type is a StudyError."""
        known = {key: value for key, value in user_attrs.items() if key in cls.model_fields}
        try:
            return cls.model_validate(known)
        except ValidationError as exc:
            where = f"trial {trial}" if trial is not None else "a trial"
            raise StudyError(
                f"{where} holds attributes autogolf cannot read: {exc.errors()[0]['loc']}: "
                f"{exc.errors()[0]['msg']}",
                hint="the study was written by another program or an incompatible autogolf version",
            ) from exc

    def written(self) -> dict[str, Any]:
        """The fields that were set, as the JSON-safe user attributes the study stores."""
        return self.model_dump(mode="json", exclude_unset=True)

    def write_to(self, trial: Any) -> None:
        """Set the fields that were set on a live ``optuna.Trial``, one user attribute each."""
        for key, value in self.written().items():
            trial.set_user_attr(key, value)

    def merged(self, other: TrialAttrs) -> TrialAttrs:
        """These attributes with every field ``other`` set taking ``other``'s value."""
        return TrialAttrs.model_validate({**self.written(), **other.written()})

    def updated(self, **fields: Any) -> TrialAttrs:
        """These attributes with ``fields`` set (validated, as when constructed)."""
        return self.merged(TrialAttrs(**fields))
