"""Findings: what the campaign has learned, one per hypothesis the confirm stage has decided.

A candidate that beat its parent on the explore tier is challenged (controller.search.confirm): it
and the incumbent (the best parent of record) are re-run with more seeds, and a one-sided Welch test
on the seeds decides. The outcome is a :class:`Finding`:

* **confirmed**: the test passed and the candidate became a parent of record (a ``promotes`` mark);
* **refuted**: its confirm runs are over without that: both sides reached the confirm tier's
  ``seeds_to_confirm`` seeds and it was not promoted, one of its own confirm runs failed, or a confirm
  run discredited it (an integrity check). A challenge still running, or one whose incumbent's runs
  failed, is not decided yet and is no finding.

Findings are derived from the study (trial attributes, states, times) and the git store (diffs and
the RunResult notes) alone, never from a file of their own, so every process that reads the campaign,
and a controller after a restart, derives the same list.

What the confirm stage does not store is which incumbent a challenge faced; it is re-derived here as
the best eligible parent of record promoted before the candidate's run finished (what
``ConfirmBook.after_explore`` saw then, judged by today's numbers of each).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict

from agent.proposal import FindingSummary
from controller.config import CampaignConfig
from controller.search.confirm import ConfirmBook
from controller.search.run_stats import ms_per_step, result_of
from controller.search.stats import welch_one_sided
from controller.store.archive import Archive, Candidate, Operation
from controller.store.gitstore import GitStore
from controller.store.records import rebuild_archive
from controller.store.study import TrialRecord

_UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)
_NOT_HYPOTHESES = (Operation.SEED, Operation.CONFIRM)


class Verdict(StrEnum):
    CONFIRMED = "confirmed"
    REFUTED = "refuted"


class FollowUp(BaseModel):
    """A stack or an ablation involving a finding's candidate, and what it showed."""

    model_config = ConfigDict(frozen=True)

    trial: int
    operation: str  # "stack" or "ablate"
    description: str  # "stacked with trial 7" / "without: the EMA"
    status: str  # its run status ("pending" while it runs)
    delta_bpb: float | None = None  # its explore run vs its (first) parent; < 0 is better
    verdict: Verdict | None = None  # its own finding, once decided


class Finding(BaseModel):
    """One decided hypothesis: the change, its effect over seeds, and what it cost in bytes and time."""

    model_config = ConfigDict(frozen=True)

    trial: int
    commit: str
    verdict: Verdict
    hypothesis: str
    operation: str
    parent_trial: int | None
    change: str  # what the commit changes vs its parent: knob settings and/or code lines
    explore_tier: str
    explore_delta_bpb: float | None  # its first scored run vs its parent's (what opened the challenge)
    tier: str  # the confirm tier, where the seeds ran
    incumbent_trial: int | None  # the parent of record it was tested against
    delta_bpb: float | None  # mean over its seeds minus the incumbent's mean; < 0 is better
    delta_std_bpb: float | None  # the standard deviation of that difference (Welch's standard error)
    seed_std_bpb: float | None  # the spread of its own seeds
    seeds: int
    incumbent_seeds: int
    p_value: float | None  # the one-sided Welch test on val_loss in nats, over the seeds recorded
    artifact_bytes: int | None
    bytes_delta: int | None  # vs its parent
    ms_per_step: float | None
    ms_per_step_delta: float | None  # vs its parent
    reason: str  # one line: why this verdict
    decided_by: int | None  # the trial whose result decided it (promotion, last or failed confirm run)
    follow_ups: tuple[FollowUp, ...] = ()

    def summary(self) -> FindingSummary:
        """The compact form the agent reads."""
        parts = []
        for f in self.follow_ups:
            delta = f" {f.delta_bpb:+.4f}" if f.delta_bpb is not None else ""
            verdict = f", {f.verdict}" if f.verdict else ""
            parts.append(f"{f.description}: {f.status}{delta}{verdict}")
        note = "; ".join(([self.reason] if self.verdict is Verdict.REFUTED else []) + parts)
        return FindingSummary(
            verdict=str(self.verdict),
            hypothesis=self.hypothesis,
            change=self.change,
            tier=self.tier,
            delta_bpb=self.delta_bpb,
            delta_std_bpb=self.delta_std_bpb,
            seeds=self.seeds,
            bytes_delta=self.bytes_delta,
            ms_per_step_delta=self.ms_per_step_delta,
            note=note,
        )


def derive_findings(config: CampaignConfig, trials: Sequence[TrialRecord], store: GitStore) -> list[Finding]:
    """Every decided hypothesis of the campaign, most telling first: confirmed ones by their gain,
    then refuted ones by how good their first run looked. Reads the study's ``trials`` and the git
    store; writes nothing."""
    derivation = _Derivation(config, trials, store)
    findings = [f for c in derivation.archive if (f := derivation.finding(c)) is not None]
    verdicts = {f.trial: f.verdict for f in findings}
    findings = [
        f.model_copy(update={"follow_ups": derivation.follow_ups(f.trial, verdicts)}) for f in findings
    ]
    return sorted(findings, key=_rank)


def agent_findings(findings: Sequence[Finding], limit: int) -> tuple[FindingSummary, ...]:
    """The first ``limit`` findings in the compact form the agent's prompt budgets."""
    return tuple(f.summary() for f in findings[:limit])


def _rank(finding: Finding) -> tuple[int, float, int]:
    if finding.verdict is Verdict.CONFIRMED:
        gain = finding.delta_bpb if finding.delta_bpb is not None else 0.0
        return (0, gain, finding.trial)
    looked = finding.explore_delta_bpb if finding.explore_delta_bpb is not None else math.inf
    return (1, looked, finding.trial)


class _Derivation:
    """The indexes one derivation needs, built once from the study's trials."""

    def __init__(self, config: CampaignConfig, trials: Sequence[TrialRecord], store: GitStore) -> None:
        self.config = config
        self.store = store
        self.explore = config.search.explore_tier
        self.book = ConfirmBook(config)
        self.need = config.confirm.seeds_to_confirm
        self.trials = sorted(trials, key=lambda r: r.number)
        self.by_number = {r.number: r for r in self.trials}
        self.archive: Archive = rebuild_archive(self.trials)
        replaced = {r.attrs.requeued_from for r in self.trials if r.attrs.requeued_from is not None}
        # The confirm stage's own runs of each program (plan.parent is the program re-run); a person's
        # `autogolf confirm` request adds seeds without opening a challenge, so it decides nothing.
        self.confirm_runs: dict[int, list[TrialRecord]] = defaultdict(list)
        for r in self.trials:
            source = r.attrs.parent_trial
            if r.attrs.operation is Operation.CONFIRM and source is not None and r.number not in replaced:
                self.confirm_runs[source].append(r)
        self.promoted_at: dict[int, datetime] = {}
        for r in self.trials:
            if r.completed is None:
                continue
            if r.attrs.promotes is not None:
                self.promoted_at.setdefault(r.attrs.promotes, r.completed)
            if r.attrs.promoted and r.attrs.confirm_of is None and r.attrs.operation is Operation.SEED:
                self.promoted_at.setdefault(r.number, r.completed)
        self.decider = {r.attrs.promotes: r.number for r in self.trials if r.attrs.promotes is not None}

    # ------------------------------------------------------------------ one finding

    def finding(self, candidate: Candidate) -> Finding | None:
        if candidate.tier != self.explore or candidate.operation in _NOT_HYPOTHESES:
            return None
        runs = [r for r in self.confirm_runs.get(candidate.trial, []) if r.attrs.request_id is None]
        if not runs:
            return None  # never challenged: it did not beat its parent, or it is still being scored
        incumbent = self._incumbent(candidate)
        mine = self.book.record_for(self.archive, candidate)
        theirs = self.book.record_for(self.archive, incumbent) if incumbent is not None else None
        pending = [r for r in runs if r.trial_state in _UNFINISHED]
        if incumbent is not None:
            pending += [r for r in self.confirm_runs.get(incumbent.trial, []) if r.trial_state in _UNFINISHED]
        # A run that ran and failed (a status on record); not one set aside unstarted (over the budget).
        failed = [r for r in runs if r.trial_state is TrialState.FAIL and r.attrs.status is not None]
        decided_by = max(r.number for r in runs)
        if candidate.confirmed:
            verdict, reason = Verdict.CONFIRMED, "passed the Welch test and became a parent of record"
            decided_by = self.decider.get(candidate.trial, decided_by)
        elif candidate.discredited:
            verdict, reason = Verdict.REFUTED, f"discredited: {candidate.suspicious}"
        elif pending:
            return None
        elif failed and (mine is None or len(mine.seed_val_losses) < self.need):
            first = min(failed, key=lambda r: r.number)
            verdict, decided_by = Verdict.REFUTED, first.number
            reason = f"confirm run {first.number} {first.attrs.status}"
            if first.attrs.status_reason:
                reason += f": {first.attrs.status_reason[:160]}"
        elif self._seeds(mine) >= self.need and self._seeds(theirs) >= self.need:
            verdict, reason = Verdict.REFUTED, self._why_not(candidate, mine, theirs)
        else:
            return None  # undecided: the incumbent's seeds are missing (its confirm runs failed)
        return self._finding(candidate, verdict, reason, decided_by, incumbent, mine, theirs)

    def _finding(
        self,
        candidate: Candidate,
        verdict: Verdict,
        reason: str,
        decided_by: int,
        incumbent: Candidate | None,
        mine: Candidate | None,
        theirs: Candidate | None,
    ) -> Finding:
        parent = self.archive.get(candidate.parent_trial) if candidate.parent_trial in self.archive else None
        mine_bpbs = mine.seed_bpbs if mine is not None else ()
        theirs_bpbs = theirs.seed_bpbs if theirs is not None else ()
        delta = std = p_value = None
        if mine_bpbs and theirs_bpbs:
            delta = statistics.fmean(mine_bpbs) - statistics.fmean(theirs_bpbs)
            if len(mine_bpbs) >= 2 and len(theirs_bpbs) >= 2:
                std = math.sqrt(
                    statistics.variance(mine_bpbs) / len(mine_bpbs)
                    + statistics.variance(theirs_bpbs) / len(theirs_bpbs)
                )
        if mine is not None and theirs is not None and min(len(mine_bpbs), len(theirs_bpbs)) >= 2:
            p_value = welch_one_sided(
                mine.seed_val_losses, theirs.seed_val_losses, self.config.confirm.min_delta_nats
            ).p_value
        step_ms = self._ms_per_step(candidate)
        parent_ms = self._ms_per_step(parent) if parent is not None else None
        return Finding(
            trial=candidate.trial,
            commit=candidate.commit,
            verdict=verdict,
            hypothesis=candidate.hypothesis or f"trial {candidate.trial}",
            operation=str(candidate.operation),
            parent_trial=candidate.parent_trial,
            change=self._change(candidate, parent),
            explore_tier=self.explore,
            explore_delta_bpb=self._explore_delta(candidate),
            tier=self.book.tier_name,
            incumbent_trial=incumbent.trial if incumbent is not None else None,
            delta_bpb=delta,
            delta_std_bpb=std,
            seed_std_bpb=statistics.stdev(mine_bpbs) if len(mine_bpbs) >= 2 else None,
            seeds=len(mine_bpbs),
            incumbent_seeds=len(theirs_bpbs),
            p_value=p_value,
            artifact_bytes=candidate.artifact_bytes,
            bytes_delta=_minus(candidate.artifact_bytes, parent.artifact_bytes if parent else None),
            ms_per_step=step_ms,
            ms_per_step_delta=_minus(step_ms, parent_ms),
            reason=reason,
            decided_by=decided_by,
        )

    def _incumbent(self, candidate: Candidate) -> Candidate | None:
        """The parent of record the candidate was challenged against: the best eligible one promoted
        before the candidate's own run finished."""
        record = self.by_number.get(candidate.trial)
        when = record.completed if record is not None else None
        pool = [
            c
            for c in self.archive
            if c.tier == self.explore
            and c.trial != candidate.trial
            and c.eligible
            and c.trial in self.promoted_at
            and (when is None or self.promoted_at[c.trial] <= when)
        ]
        return min(pool) if pool else None

    def _seeds(self, record: Candidate | None) -> int:
        return len(record.seed_val_losses) if record is not None else 0

    def _why_not(self, candidate: Candidate, mine: Candidate | None, theirs: Candidate | None) -> str:
        if not candidate.verified:
            return "not verified by a full integrity probe while its seeds ran"
        tier = self.config.confirm
        if mine is None or theirs is None:
            return "no seeds on the confirm tier"
        test = welch_one_sided(mine.seed_val_losses, theirs.seed_val_losses, tier.min_delta_nats)
        return (
            f"Welch test failed: Δ {test.delta_mean:+.4f} nats (needs > {tier.min_delta_nats:g}), "
            f"p = {test.p_value:.3g} (needs < {tier.p_value:g})"
        )

    def _explore_delta(self, candidate: Candidate) -> float | None:
        """The candidate's first scored run vs its parent's on the explore tier (the study's values)."""
        own = self.by_number.get(candidate.trial)
        parent = self.by_number.get(candidate.parent_trial) if candidate.parent_trial is not None else None
        if own is None or parent is None or own.value is None or parent.value is None:
            return None
        return own.value - parent.value

    def _ms_per_step(self, candidate: Candidate) -> float | None:
        result = result_of(self.store, candidate.commit)
        return ms_per_step(result.curve) if result is not None else None

    def _change(self, candidate: Candidate, parent: Candidate | None) -> str:
        """Knob settings that differ from the parent's, and the size of the code diff."""
        if parent is None:
            return "a root program"
        parts = []
        knobs = [
            f"{name} {parent.knob_values.get(name, '?')} → {value}"
            for name, value in sorted(candidate.knob_values.items())
            if parent.knob_values.get(name) != value
        ]
        if knobs:
            parts.append("knobs " + ", ".join(knobs))
        added = removed = 0
        for line in self.store.diff(parent.commit, candidate.commit).splitlines():
            if line.startswith("+") and not line.startswith("+++"):
                added += 1
            elif line.startswith("-") and not line.startswith("---"):
                removed += 1
        if added or removed:
            parts.append(f"code +{added} −{removed} lines")
        return "; ".join(parts) or "no change to code or knobs"

    # ------------------------------------------------------------------ stacks and ablations

    def follow_ups(self, trial: int, verdicts: dict[int, Verdict]) -> tuple[FollowUp, ...]:
        """Stacks that combined ``trial`` with another win, and ablations of its change."""
        found = []
        for r in self.trials:
            attrs = r.attrs
            if attrs.operation is Operation.STACK and trial in (attrs.parent_trial, attrs.second_parent):
                other = attrs.second_parent if attrs.parent_trial == trial else attrs.parent_trial
                description = f"stacked with trial {other}"
            elif attrs.operation is Operation.ABLATE and attrs.parent_trial == trial:
                description = f"without: {attrs.ablated_part or 'part of its change'}"
            else:
                continue
            found.append(
                FollowUp(
                    trial=r.number,
                    operation=str(attrs.operation),
                    description=description,
                    status=self._status(r),
                    delta_bpb=self._explore_delta(self.archive.get(r.number))
                    if r.number in self.archive
                    else None,
                    verdict=verdicts.get(r.number),
                )
            )
        return tuple(found)

    def _status(self, record: TrialRecord) -> str:
        if record.trial_state in _UNFINISHED:
            return "pending"
        if record.number in self.archive:
            return str(self.archive.get(record.number).status)
        return str(record.attrs.status) if record.attrs.status is not None else record.state.lower()


def _minus(a: float | int | None, b: float | int | None):
    return a - b if a is not None and b is not None else None
