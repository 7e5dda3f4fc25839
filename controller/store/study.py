"""The campaign's Optuna study (DESIGN.md, "Optuna"): ask/tell over each parent's knob table.

Optuna's live ``Trial`` stays inside this module; callers hold a :class:`TrialHandle` and read finished
trials as :class:`TrialRecord`. The parent is chosen outside Optuna (it cannot model a growing
categorical) and stored as user attributes; Optuna samples only the parent's searchable knobs.

Knob values are drawn by controller.store.knob_draws so that a tuning trial never repeats a setting
the study holds for the same parent and tier.

Recovery. A trial whose run is gone (its controller or worker died) is failed first, and re-queued
only by the caller whose state change won: Optuna's RDB storage takes one change of a finished
trial and refuses every later one, so of several workers recovering the same trial exactly one
re-queues it. A trial's run may be lost ``max_reruns + 1`` times; then it is failed and not re-run
(as Optuna's ``RetryFailedTrialCallback(max_retry)`` caps retries).

What a trial records beside its state is one :class:`~controller.store.trial_attrs.TrialAttrs`:
``ask`` sets what the trial runs (tier, operation, parent, knob values, search space); the caller
adds the rest (candidate, hypothesis, tokens, cost, status reason, the optuna-dashboard note).
"""

from __future__ import annotations

import hashlib
import math
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.pruners import BasePruner, NopPruner
from optuna.trial import FrozenTrial, TrialState

from controller.errors import StudyError
from controller.store import knob_draws
from controller.store.archive import Candidate, Operation
from controller.store.storage import open_storage
from controller.store.trial_attrs import TrialAttrs
from sandbox.knobs import Knob, KnobValue
from sandbox.spec import Limits

_OPEN_ATTEMPTS = 5


@dataclass(frozen=True)
class TrialHandle:
    """A trial being run. ``knob_values`` is every knob setting the run uses (sampled and fixed).

    ``requeued_from`` is set when this trial re-runs one that a crash interrupted: then ``attrs`` are
    the original's (parent, candidate program, ...) and the caller should re-run that candidate.
    """

    number: int
    tier: str
    operation: str
    parent_trial: int | None
    knob_values: Mapping[str, KnobValue]
    requeued_from: int | None = None
    attrs: TrialAttrs = field(default_factory=TrialAttrs)
    _trial: optuna.Trial | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class TrialRecord:
    """A read-only view of one trial of the study."""

    number: int
    state: str  # the TrialState's name, for display and JSON; compare with trial_state
    value: float | None
    params: Mapping[str, Any]
    attrs: TrialAttrs
    intermediate_values: Mapping[int, float]
    constraints: Mapping[str, float]
    started: datetime | None
    completed: datetime | None

    @property
    def trial_state(self) -> TrialState:
        return TrialState[self.state]

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())


def budget_trials(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The trials a trial budget counts: one per experiment, by its latest attempt. A trial replaced
    by a re-run (its run was lost, or it was set aside unstarted) is not counted; the re-run is, from
    the moment it is queued, so a worker's death does not use up the budget. Nor is a trial whose
    process died while asking it (it never ran)."""
    replaced = {r.attrs.requeued_from for r in records}
    return [r for r in records if r.number not in replaced and not r.attrs.never_ran]


class TierMedianPruner(BasePruner):
    """Optuna's median rule, against earlier completed trials of the *same tier* only.

    A trial is stopped at step ``s`` when its best loss so far is worse than the median of the
    completed same-tier trials' losses at their last report at or before ``s`` (as
    ``optuna.pruners.MedianPruner`` does study-wide; smoke and full runs are not comparable).
    "Step" is whatever the caller reports consistently: training steps, or elapsed seconds.
    """

    def __init__(self, n_startup_trials: int = 5, n_warmup_steps: int = 0) -> None:
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        tier = TrialAttrs.read(trial.user_attrs, trial=trial.number).tier
        earlier = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if TrialAttrs.read(t.user_attrs, trial=t.number).tier == tier
        ]
        if len(earlier) < max(self.n_startup_trials, 1):
            return False
        at_step = [v for t in earlier if (v := _value_at(t, step)) is not None]
        if len(at_step) < max(self.n_startup_trials, 1):
            return False
        own = [v for s, v in trial.intermediate_values.items() if s <= step and math.isfinite(v)]
        return bool(own) and min(own) > statistics.median(at_step)


def _value_at(trial: FrozenTrial, step: int) -> float | None:
    steps = [s for s in trial.intermediate_values if s <= step]
    if not steps:
        return None
    value = trial.intermediate_values[max(steps)]
    return value if math.isfinite(value) else None


def limit_constraints(artifact_bytes: int, train_seconds: float, limits: Limits) -> dict[str, float]:
    """Optuna constraints (feasible when <= 0): bytes and train seconds over the tier's limits."""
    return {
        "artifact_bytes": float(artifact_bytes - limits.artifact_bytes),
        "train_seconds": float(train_seconds - limits.train_seconds),
    }


class CampaignStudy:
    """One study per campaign in ``storage_url`` (SQLite by default; any SQLAlchemy URL works)."""

    # Attributes a re-run does not take from the trial it replaces: they describe that attempt.
    not_inherited: tuple[str, ...] = ("status_reason",)

    def __init__(
        self,
        storage_url: str,
        name: str,
        *,
        direction: str = "minimize",
        sampler: str = "tpe",
        pruner: str = "median",
        n_startup_trials: int = 10,
        pruner_startup_trials: int = 5,
        pruner_warmup_steps: int = 0,
        seed: int | None = None,
        sampler_salt: str | None = None,
        max_reruns: int = 2,
    ) -> None:
        """``sampler_salt``: mixed into ``seed`` so that processes sharing the study (workers) draw
        apart; ``max_reruns``: how often a trial whose run was lost is re-run before it is given up."""
        self.name = name
        self.storage_url = storage_url
        self.max_reruns = max_reruns
        if seed is not None and sampler_salt is not None:
            digest = hashlib.sha256(f"{seed}:{sampler_salt}".encode()).digest()
            seed = int.from_bytes(digest[:4], "big")
        if sampler == "tpe":
            # constant_liar: a running trial counts as a bad result, so parallel asks spread out.
            chosen_sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
                n_startup_trials=n_startup_trials, seed=seed, constant_liar=True
            )
        elif sampler == "random":
            chosen_sampler = optuna.samplers.RandomSampler(seed=seed)
        else:
            raise StudyError(f"unknown sampler {sampler!r}", hint="use 'tpe' or 'random'")
        if pruner == "median":
            chosen_pruner: BasePruner = TierMedianPruner(pruner_startup_trials, pruner_warmup_steps)
        elif pruner == "none":
            chosen_pruner = NopPruner()
        else:
            raise StudyError(f"unknown pruner {pruner!r}", hint="use 'median' or 'none'")
        # Workers that start together race to create the schema and the study on a fresh database;
        # the losers' errors (duplicate table, duplicate study) clear up once the winner is done.
        for attempt in range(_OPEN_ATTEMPTS):
            try:
                self._storage = open_storage(storage_url)
                self._study = optuna.create_study(
                    storage=self._storage,
                    study_name=name,
                    direction=direction,
                    sampler=chosen_sampler,
                    pruner=chosen_pruner,
                    load_if_exists=True,
                )
                break
            except StudyError:
                raise
            except Exception as exc:  # SQLAlchemy and Optuna raise many kinds; name the URL either way
                if attempt + 1 < _OPEN_ATTEMPTS:
                    time.sleep(random.uniform(0.2, 1.0) * (attempt + 1))
                    continue
                raise StudyError(
                    f"cannot open study {name!r} at {storage_url} ({_OPEN_ATTEMPTS} attempts): {exc}",
                    hint="check the storage URL, that its folder exists and that the database is reachable",
                ) from exc

    @classmethod
    def from_config(cls, config: Any, *, sampler_salt: str | None = None) -> Self:
        """The study described by a :class:`controller.config.CampaignConfig`."""
        section = config.study
        return cls(
            config.storage_url,
            config.campaign.name,
            sampler=section.sampler,
            pruner=section.pruner,
            n_startup_trials=section.n_startup_trials,
            pruner_startup_trials=section.pruner_startup_trials,
            pruner_warmup_steps=section.pruner_warmup_steps,
            seed=config.campaign.seed,
            sampler_salt=sampler_salt,
            max_reruns=section.max_reruns,
        )

    # ------------------------------------------------------------------ ask

    def ask(
        self,
        parent: Candidate | None,
        knobs: Sequence[Knob],
        fixed: Mapping[str, KnobValue] | None = None,
        *,
        tier: str,
        operation: Operation | str,
        attrs: TrialAttrs | None = None,
    ) -> TrialHandle:
        """Start a trial on ``parent`` (``None`` for the seed): sample every searchable knob of
        ``knobs`` not in ``fixed``; the rest take ``fixed`` or their defaults.

        If a re-queued trial is waiting (see :meth:`recover_stale`), Optuna hands that one out first:
        the returned handle then has ``requeued_from`` set and describes the original, not ``parent``.
        Check :meth:`waiting_requeues` before preparing a new candidate to avoid wasted work.
        """
        trial = self._study.ask()
        if TrialAttrs.read(trial.user_attrs, trial=trial.number).requeued_from is not None:
            return self._requeued_handle(trial)
        fixed = dict(fixed or {})
        parent_trial = parent.trial if parent else None
        values: dict[str, KnobValue] = {}
        to_sample = [k for k in knobs if k.name not in fixed and k.searchable]
        for knob in knobs:
            values[knob.name] = fixed.pop(knob.name) if knob.name in fixed else knob.default
        values.update(fixed)  # overrides for names outside the table are passed on as given
        space: dict[str, list[str]] = {}
        if to_sample:
            trial, sampled = knob_draws.fix_new_setting(
                self._study, trial, to_sample, values, parent_trial, tier
            )
            for k in sampled:
                values[k.knob.name] = knob_draws.suggest(trial, k.param, k.dist)  # the value drawn
                space[k.knob.name] = [k.param, distribution_to_json(k.dist)]
        base = TrialAttrs(
            tier=tier,
            operation=Operation(operation),
            parent_trial=parent_trial,
            parent_commit=parent.commit if parent else None,
        )
        # knob_values last: recovery reads a trial without them as one whose ask never finished.
        knob_attrs = TrialAttrs(knob_values=values, search_space=space)
        asked = base.merged(attrs or TrialAttrs())
        asked.write_to(trial)
        knob_attrs.write_to(trial)
        return TrialHandle(
            number=trial.number,
            tier=tier,
            operation=str(operation),
            parent_trial=parent_trial,
            knob_values=values,
            attrs=asked.merged(knob_attrs),  # what was just written: no read back from the storage
            _trial=trial,
        )

    def waiting_requeues(self) -> int:
        """How many re-queued trials wait to be handed out by :meth:`ask` or :meth:`ask_requeued`."""
        return len(self._study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def ask_requeued(self) -> TrialHandle | None:
        """Hand out a waiting re-queued trial, or ``None`` when none waits."""
        for waiting in self._study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if TrialAttrs.read(waiting.user_attrs, trial=waiting.number).requeued_from is None:
                continue
            # As Study.ask pops a waiting trial: the storage moves it to RUNNING for one caller only.
            if self._storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING):
                return self._requeued_handle(optuna.Trial(self._study, waiting._trial_id))
        return None

    def _requeued_handle(self, trial: optuna.Trial) -> TrialHandle:
        attrs = TrialAttrs.read(trial.user_attrs, trial=trial.number)
        for param, dist_json in attrs.search_space.values():
            knob_draws.suggest(trial, param, json_to_distribution(dist_json))  # the enqueued value
        return _handle_from(trial, attrs)

    def handle_for_running(self, number: int) -> TrialHandle:
        """A live handle on RUNNING trial ``number``, e.g. to tell a result that the git store already
        holds after a restart. Raises :class:`StudyError` when the trial is not running."""
        frozen = next((t for t in self._study.get_trials(deepcopy=False) if t.number == number), None)
        if frozen is None or frozen.state is not TrialState.RUNNING:
            state = frozen.state.name if frozen else "missing"
            raise StudyError(f"trial {number} of study {self.name!r} is {state}, not RUNNING")
        attrs = TrialAttrs.read(frozen.user_attrs, trial=number)
        return _handle_from(optuna.Trial(self._study, frozen._trial_id), attrs)

    # ------------------------------------------------------------------ report and tell

    def report(self, handle: TrialHandle, step: int, value: float) -> bool:
        """Report the training loss at ``step``; return whether the run should be stopped (pruned).

        A non-finite loss (diverged) always says stop.
        """
        if not math.isfinite(value):
            return True
        trial = _live(handle)
        trial.report(value, step)
        return trial.should_prune()

    def set_attrs(self, handle: TrialHandle, attrs: TrialAttrs) -> None:
        attrs.write_to(_live(handle))

    def set_note(self, handle: TrialHandle, hypothesis: str, diff: str) -> None:
        """The trial's note for optuna-dashboard, kept as user attribute ``note_markdown``."""
        note = f"### {hypothesis}\n\n```diff\n{diff}\n```\n" if diff else f"### {hypothesis}\n"
        self.set_attrs(handle, TrialAttrs(note_markdown=note))
        try:  # optuna-dashboard shows its own notes next to each trial; optional dependency
            from optuna_dashboard import save_note
        except ImportError:
            return
        save_note(_live(handle), note)

    def tell(
        self,
        handle: TrialHandle,
        value: float,
        constraints: Mapping[str, float],
        attrs: TrialAttrs | None = None,
    ) -> None:
        """Finish a scored trial with its objective (val_bpb) and constraints (feasible when <= 0,
        see :func:`limit_constraints`). A non-finite value finishes it as failed instead."""
        trial = _live(handle)
        self.set_attrs(handle, attrs or TrialAttrs())
        if not math.isfinite(value):
            self.fail(handle, f"objective {value} is not finite")
            return
        for key, bound in constraints.items():
            if math.isnan(bound):
                raise StudyError(f"constraint {key} of trial {handle.number} is NaN")
            trial.set_constraint(key, bound)
        self._study.tell(trial, value)

    def fail(self, handle: TrialHandle, reason: str, attrs: TrialAttrs | None = None) -> None:
        """Finish a trial that produced no score (crash, timeout, preflight failure, ...)."""
        self.set_attrs(handle, (attrs or TrialAttrs()).updated(status_reason=reason))
        self._study.tell(_live(handle), state=TrialState.FAIL)

    def prune(self, handle: TrialHandle, reason: str = "pruned") -> None:
        """Finish a trial that :meth:`report` told to stop (its last reported loss is kept)."""
        self.set_attrs(handle, TrialAttrs(status_reason=reason))
        self._study.tell(_live(handle), state=TrialState.PRUNED)

    # ------------------------------------------------------------------ recovery and views

    def running_trials(self) -> list[int]:
        return [t.number for t in self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]

    def recover_stale(
        self,
        is_alive: Callable[[int], bool],
        reason: str = "stale: its run was gone when the controller restarted",
    ) -> list[int]:
        """Fail every RUNNING trial whose run is gone and re-queue it; return the numbers this call
        failed (see the module docstring: a trial another caller finished first is left to it).

        The re-run is queued with ``enqueue_trial`` carrying the trial's parameters and attributes plus
        ``requeued_from`` (its number), ``original_trial`` (the first of its chain) and ``lost_runs``;
        a trial whose chain lost ``max_reruns + 1`` runs is failed with ``gave_up`` and not queued. A
        caller that dies between the fail and the enqueue loses that re-run (the trial stays failed).
        A caller that records results in the git store before telling the study should first tell the
        study any RUNNING trial the store already holds, so that result is not run twice.
        """
        recovered = []
        for stale in self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not is_alive(stale.number) and self._fail_and_requeue(stale, reason, lost=True):
                recovered.append(stale.number)
        return recovered

    def requeue(self, handle: TrialHandle, reason: str) -> None:
        """Fail RUNNING trial ``handle`` with ``reason`` and queue its re-run, as :meth:`recover_stale`
        does for a dead one: for a trial that was asked but could not run (the campaign stopped first).
        Its run was not lost, so this re-run does not count towards ``max_reruns``."""
        _live(handle)  # a handle from ask(), so the trial is this process's
        frozen = next(t for t in self._study.get_trials(deepcopy=False) if t.number == handle.number)
        if not self._fail_and_requeue(frozen, reason, lost=False):
            raise StudyError(f"trial {handle.number} was finished by another process before its re-queue")

    def _fail_and_requeue(self, stale: FrozenTrial, reason: str, *, lost: bool) -> bool:
        """Fail ``stale``; when this call's state change won, queue its re-run (within the cap)."""
        held = TrialAttrs.read(stale.user_attrs, trial=stale.number)
        lost_runs = held.lost_runs + int(lost)
        # ask() writes knob_values last: without them the ask never finished, so nothing ran and its
        # plan died with the process; a re-run would run a setting nobody chose.
        never_ran = held.knob_values is None
        give_up = lost and lost_runs > self.max_reruns
        if never_ran:
            reason += "; not re-run: it died while being asked, before anything ran"
        elif give_up:
            reason += (
                f"; not re-run: its run was lost {lost_runs} times (study.max_reruns = {self.max_reruns})"
            )
        try:
            # The reason goes first: a finished trial takes no attributes. The trial's own process may
            # overwrite it while finishing the trial; then that process's state change wins as well.
            marks = TrialAttrs(status_reason=reason)
            if never_ran:
                marks = marks.updated(never_ran=True)
            elif give_up:
                marks = marks.updated(gave_up=True)
            for key, value in marks.written().items():
                self._storage.set_trial_user_attr(stale._trial_id, key, value)
            if not self._storage.set_trial_state_values(stale._trial_id, TrialState.FAIL):
                return False
        except UpdateFinishedTrialError:
            return False  # finished by its own process or another recoverer in the meantime
        if not (give_up or never_ran):
            rerun = held.updated(
                requeued_from=stale.number,
                original_trial=held.original_trial if held.original_trial is not None else stale.number,
                lost_runs=lost_runs,
            )
            attrs = {k: v for k, v in rerun.written().items() if k not in self.not_inherited}
            self._study.enqueue_trial(dict(stale.params), user_attrs=attrs)
        return True

    def trials(self) -> tuple[TrialRecord, ...]:
        """Every trial, in number order, as read-only records."""
        return tuple(_record(t) for t in self._study.get_trials(deepcopy=False))

    def trial(self, number: int) -> TrialRecord:
        for record in self.trials():
            if record.number == number:
                return record
        raise StudyError(f"study {self.name!r} has no trial {number}")


def _handle_from(trial: optuna.Trial, attrs: TrialAttrs) -> TrialHandle:
    return TrialHandle(
        number=trial.number,
        tier=attrs.tier,
        operation=str(attrs.operation or ""),
        parent_trial=attrs.parent_trial,
        knob_values=dict(attrs.knob_values or {}),
        requeued_from=attrs.requeued_from,
        attrs=attrs,
        _trial=trial,
    )


def _live(handle: TrialHandle) -> optuna.Trial:
    if handle._trial is None:
        raise StudyError(f"trial {handle.number} has no live Optuna trial", hint="get handles from ask()")
    return handle._trial


def _record(trial: FrozenTrial) -> TrialRecord:
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        value=trial.value if trial.state is TrialState.COMPLETE else None,
        params=dict(trial.params),
        attrs=TrialAttrs.read(trial.user_attrs, trial=trial.number),
        intermediate_values=dict(trial.intermediate_values),
        constraints=dict(trial.constraints),
        started=trial.datetime_start,
        completed=trial.datetime_complete,
    )
