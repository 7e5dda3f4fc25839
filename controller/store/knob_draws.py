"""Knob tables as Optuna distributions, and knob settings drawn so that no experiment runs twice.

A tuning trial runs its parent's program with sampled knob values, so two trials with the same parent,
tier and values are the same experiment. :func:`draw_setting` asks the study's sampler for values
without committing them to a trial (``BaseSampler.sample_independent``, the call ``Trial.suggest_*``
makes), checks them against every setting the study holds, draws again a few times when they repeat
one, then falls back to a perturbation of the last draw (a neighbouring choice, integer or 5 % of a
float's range); the chosen values are then given to the trial as Optuna's fixed parameters, as
``Study.enqueue_trial`` does, so the trial records them exactly as sampled ones.

Knob names become parameter names. A parent whose table changed a knob's *kind* (int vs float, log
scale, a different choice list) would collide with earlier trials, which Optuna rejects; such a knob
is sampled under ``NAME[signature]`` instead, so each shape of a knob has one parameter that TPE can
learn from (Optuna's TPE handles dynamic search spaces by modelling each parameter from the trials
that have it).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
)
from optuna.trial import FrozenTrial, TrialState

from controller.errors import StudyError
from controller.store.trial_attrs import TrialAttrs
from sandbox.knobs import Knob, KnobValue

SAMPLER_DRAWS = 4  # draws from the sampler before perturbing the last one
_PERTURB_FRACTION = 0.05  # of a float knob's range (its log range for a log-scale knob)


@dataclass(frozen=True)
class SampledKnob:
    knob: Knob
    param: str  # the Optuna parameter it is sampled as (see the module docstring)
    dist: BaseDistribution


def distribution(knob: Knob) -> BaseDistribution:
    if knob.choices is not None:
        return CategoricalDistribution(knob.choices)
    assert knob.low is not None and knob.high is not None  # searchable: a range
    if knob.type == "int":
        step = 1 if knob.log or knob.step is None else int(knob.step)
        return IntDistribution(int(knob.low), int(knob.high), log=knob.log, step=step)
    return FloatDistribution(knob.low, knob.high, log=knob.log, step=None if knob.log else knob.step)


def sampled_knob(knob: Knob, known: Mapping[str, BaseDistribution]) -> SampledKnob:
    """How ``knob`` is sampled given the parameters the study already has (``known``: name ->
    the distribution Optuna's storage compares a new one with, that of the param's first trial)."""
    dist = distribution(knob)
    previous = known.get(knob.name)
    try:
        if previous is not None:
            check_distribution_compatibility(previous, dist)  # the storage's own rule
        return SampledKnob(knob, knob.name, dist)
    except ValueError:
        return SampledKnob(knob, f"{knob.name}[{_signature(dist)}]", dist)


def known_distributions(trials: Sequence[FrozenTrial]) -> dict[str, BaseDistribution]:
    known: dict[str, BaseDistribution] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        for param, dist in trial.distributions.items():
            known.setdefault(param, dist)
    return known


def setting_key(parent_trial: int | None, tier: str, values: Mapping[str, Any]) -> str:
    return json.dumps([parent_trial, tier, dict(values)], sort_keys=True, default=str)


def held_settings(trials: Sequence[FrozenTrial], number: int) -> set[str]:
    """The settings of every sampled trial but ``number``: run, running, failed or waiting to re-run.
    Trials asked before settings were keyed have theirs rebuilt from their attributes."""
    held = set()
    for trial in trials:
        if trial.number == number:
            continue
        attrs = TrialAttrs.read(trial.user_attrs, trial=trial.number)
        key = attrs.knob_setting
        if key is None and attrs.search_space and attrs.knob_values is not None:
            key = setting_key(attrs.parent_trial, attrs.tier, attrs.knob_values)
        if key:
            held.add(key)
    return held


def fix_new_setting(
    study: optuna.Study,
    trial: optuna.Trial,
    knobs: Sequence[Knob],
    values: Mapping[str, KnobValue],
    parent_trial: int | None,
    tier: str,
) -> tuple[optuna.Trial, list[SampledKnob]]:
    """Choose values for ``knobs`` that no other trial of ``study`` holds with ``values`` (the rest of
    the setting) on this parent and tier, and fix them on ``trial``; return the trial to suggest them
    from and how each knob is sampled. Each candidate is announced on the trial (``knob_setting``)
    before the study is read again, so of two workers that draw one setting at once at least one
    sees the other's and draws again. Raises :class:`StudyError`, with the trial failed, when no
    untried setting is found."""
    trials = study.get_trials(deepcopy=False)
    frozen = next(t for t in trials if t.number == trial.number)
    known = known_distributions(trials)
    sampled = [sampled_knob(k, known) for k in knobs]
    held = held_settings(trials, trial.number)

    def key_of(drawn: Mapping[str, KnobValue]) -> str:
        return setting_key(parent_trial, tier, {**values, **drawn})

    def is_new(key: str) -> bool:
        if key in held:
            return False
        TrialAttrs(knob_setting=key).write_to(trial)
        held.update(held_settings(study.get_trials(deepcopy=False), trial.number))
        return key not in held

    chosen = draw_setting(study, frozen, sampled, key_of, is_new)
    if chosen is None:
        reason = f"every knob setting drawn repeats a {tier} trial of the study on this parent"
        # It holds no setting: it never runs.
        TrialAttrs(knob_setting=None, status_reason=reason).write_to(trial)
        study.tell(trial, state=TrialState.FAIL)
        raise StudyError(
            f"trial {trial.number} not started on parent {parent_trial}: {reason}",
            hint="the parent's knob space is tried out; widen its ranges or tune another parent",
        )
    # Fixed parameters are how Optuna gives a trial chosen values (Study.enqueue_trial uses them).
    trial.storage.set_trial_system_attr(frozen._trial_id, "fixed_params", chosen)
    return optuna.Trial(study, frozen._trial_id), sampled


def draw_setting(
    study: optuna.Study,
    trial: FrozenTrial,
    knobs: Sequence[SampledKnob],
    key_of: Callable[[Mapping[str, KnobValue]], str],
    is_new: Callable[[str], bool],
) -> dict[str, KnobValue] | None:
    """Parameter values (param -> value) for ``knobs`` whose ``key_of`` (knob name -> value) passes
    ``is_new``: the sampler's draws first, then perturbations of the last; None when every candidate
    repeats a held setting (a small discrete space tried out)."""
    last: dict[str, KnobValue] = {}
    for _ in range(SAMPLER_DRAWS):
        last = {k.param: _sample(study, trial, k) for k in knobs}
        if is_new(key_of({k.knob.name: last[k.param] for k in knobs})):
            return last
    for candidate in _perturbations(last, knobs):
        if is_new(key_of({k.knob.name: candidate[k.param] for k in knobs})):
            return candidate
    return None


def suggest(trial: optuna.Trial, param: str, dist: BaseDistribution) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if isinstance(dist, CategoricalDistribution):
            return trial.suggest_categorical(param, dist.choices)
        if isinstance(dist, IntDistribution):
            return trial.suggest_int(param, dist.low, dist.high, step=dist.step, log=dist.log)
        assert isinstance(dist, FloatDistribution)
        return trial.suggest_float(param, dist.low, dist.high, step=dist.step, log=dist.log)


def _sample(study: optuna.Study, trial: FrozenTrial, knob: SampledKnob) -> Any:
    value = study.sampler.sample_independent(study, trial, knob.param, knob.dist)
    return knob.dist.to_external_repr(knob.dist.to_internal_repr(value))  # plain Python, as suggest gives


def _perturbations(values: Mapping[str, Any], knobs: Sequence[SampledKnob]) -> Iterator[dict[str, Any]]:
    for knob in knobs:
        for value in _neighbours(values[knob.param], knob.dist):
            yield {**values, knob.param: value}


def _neighbours(value: Any, dist: BaseDistribution) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return [c for c in dist.choices if c != value]
    if isinstance(dist, IntDistribution):
        return [v for v in (value + dist.step, value - dist.step) if dist.low <= v <= dist.high]
    assert isinstance(dist, FloatDistribution)
    if dist.log:
        width = _PERTURB_FRACTION * math.log(dist.high / dist.low)
        moved = [value * math.exp(width), value * math.exp(-width)]
    else:
        width = max(_PERTURB_FRACTION * (dist.high - dist.low), dist.step or 0.0)
        moved = [value + width, value - width]
        if dist.step:
            moved = [dist.low + round((v - dist.low) / dist.step) * dist.step for v in moved]
    return [v for v in moved if dist.low <= v <= dist.high and v != value]


def _signature(dist: BaseDistribution) -> str:
    if isinstance(dist, CategoricalDistribution):
        digest = hashlib.sha1(repr(dist.choices).encode()).hexdigest()[:6]
        return f"choice-{digest}"
    kind = "int" if isinstance(dist, IntDistribution) else "float"
    return f"{kind}-log" if getattr(dist, "log", False) else kind
