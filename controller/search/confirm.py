"""The confirm stage: a candidate that beats its parent is re-run with more seeds, and becomes a parent
of record only when a one-sided Welch test on its per-seed val_loss (nats) beats the incumbent's by the
confirm tier's ``min_delta_nats`` at ``p_value`` (CHALLENGE.md: a record must win by >= 0.005 nats at
p < 0.01, usually over 3 seeds).

Each program has one *record* per tier: on the explore tier that is the candidate itself (its scored
run is seed 1); on another confirm tier, the first confirm run creates a record (a commit on the
candidate with the same tree) and later runs add seeds to it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from controller.config import CampaignConfig
from controller.search.stats import welch_one_sided
from controller.search.trial import BASE_SEED, TrialPlan
from controller.store.archive import Archive, Candidate, Operation
from controller.store.records import discredited, with_verified
from controller.store.trial_attrs import Discredit, TrialAttrs
from sandbox import RunResult, RunStatus


@dataclass(frozen=True)
class Challenge:
    challenger: Candidate  # the explore-tier candidate that beat its parent
    incumbent: Candidate  # the explore-tier candidate of record it must beat


class ConfirmBook:
    def __init__(self, config: CampaignConfig) -> None:
        self.tier_name = config.search.confirm_tier
        self.tier = config.confirm
        self.explore = config.search.explore_tier
        self.open: list[Challenge] = []
        self.scheduled: Counter[str] = Counter()  # commit -> seeds scheduled but not yet recorded

    def record_for(self, archive: Archive, source: Candidate) -> Candidate | None:
        """The program's record on the confirm tier, if it has one."""
        if source.tier == self.tier_name:  # the archive's copy: it holds every seed recorded since
            return archive.get(source.trial) if source.trial in archive else source
        for candidate in archive:
            if (
                candidate.operation is Operation.CONFIRM
                and candidate.tier == self.tier_name
                and candidate.parent_trial == source.trial
            ):
                return candidate
        return None

    def _seeds(self, archive: Archive, source: Candidate) -> int:
        record = self.record_for(archive, source)
        return len(record.seed_val_losses) if record is not None else 0

    def _plans(self, archive: Archive, source: Candidate) -> list[TrialPlan]:
        have = self._seeds(archive, source) + self.scheduled[source.commit]
        plans = []
        for index in range(have, self.tier.seeds_to_confirm):
            plans.append(
                TrialPlan(
                    operation=Operation.CONFIRM,
                    tier_name=self.tier_name,
                    parent=source,
                    confirm_source=source,
                    seed=BASE_SEED + index,
                )
            )
        self.scheduled[source.commit] += len(plans)
        return plans

    def more_seeds(self, archive: Archive, source: Candidate) -> list[TrialPlan]:
        """Confirm runs that bring ``source``'s record to the confirm tier's seeds (an ablation's,
        controller.search.ablation); seeds already scheduled are not scheduled again."""
        return self._plans(archive, source)

    def incumbent(self, archive: Archive) -> Candidate | None:
        """The explore-tier candidate of record: the best confirmed one (the seed program at first)."""
        return archive.incumbent(self.explore)

    def after_explore(self, archive: Archive, candidate: Candidate) -> list[TrialPlan]:
        """Confirm runs to schedule after ``candidate`` was scored: none unless it beat its parent.

        A candidate held as suspicious is challenged too: its confirm runs carry the full integrity
        probe, which verifies it (it then competes as any other) or discredits it."""
        if (
            not (candidate.eligible or candidate.held)
            or candidate.parent_trial is None
            or candidate.parent_trial not in archive
        ):
            return []
        parent = archive.get(candidate.parent_trial)
        incumbent = self.incumbent(archive)
        if parent.val_bpb is None or candidate.val_bpb is None or candidate.val_bpb >= parent.val_bpb:
            return []
        if incumbent is None or incumbent.trial == candidate.trial:
            return []
        self.open.append(Challenge(candidate, incumbent))
        return self._plans(archive, candidate) + self._plans(archive, incumbent)

    def ran(self, source: Candidate) -> None:
        """A scheduled confirm run of ``source`` finished (recorded or failed)."""
        if self.scheduled[source.commit] > 0:
            self.scheduled[source.commit] -= 1

    def judge(self, archive: Archive) -> list[tuple[Candidate, str]]:
        """Decide every open challenge whose both sides have all their seeds; return each winner (the
        explore-tier challenger) with a one-line verdict. Losers are closed; their numbers stay."""
        winners = []
        still_open = []
        for challenge in self.open:
            mine = self.record_for(archive, archive.get(challenge.challenger.trial))
            theirs = self.record_for(archive, archive.get(challenge.incumbent.trial))
            need = self.tier.seeds_to_confirm
            if (
                mine is None
                or theirs is None
                or len(mine.seed_val_losses) < need
                or len(theirs.seed_val_losses) < need
            ):
                if self.scheduled[challenge.challenger.commit] or self.scheduled[challenge.incumbent.commit]:
                    still_open.append(challenge)
                continue
            challenger = archive.get(challenge.challenger.trial)
            if not (challenger.eligible and challenger.verified):
                continue  # discredited, or not verified by a full probe, while its seeds ran: it cannot win
            test = welch_one_sided(mine.seed_val_losses, theirs.seed_val_losses, self.tier.min_delta_nats)
            if test.passes(self.tier.p_value):
                winners.append(
                    (
                        archive.get(challenge.challenger.trial),
                        f"trial {challenge.challenger.trial} confirmed over trial {challenge.incumbent.trial}: "
                        f"Δ {test.delta_mean:.4f} nats, p = {test.p_value:.3g} over {need} seeds",
                    )
                )
        self.open = still_open
        return winners


def judge_integrity(
    archive: Archive, number: int, source: Candidate, record: Candidate | None, result: RunResult
) -> TrialAttrs:
    """A confirm run carries the full integrity probe. Passing it verifies the program (a candidate held
    as suspicious becomes eligible); failing an integrity check discredits it, and its record on the
    confirm tier, for good. Updates ``archive``; returns the attributes that record this on the trial."""
    programs = [c.trial for c in (source, record) if c is not None and c.trial in archive]
    if result.verified:
        for trial in programs:
            archive.add(with_verified(archive.get(trial)))
        return TrialAttrs(verifies=source.trial)
    if result.status is RunStatus.INVALID and result.failed_check is not None:
        reason = f"trial {number} (a confirm run) failed: {result.reason}"
        for trial in programs:
            archive.add(discredited(archive.get(trial), reason))
        return TrialAttrs(discredits=Discredit(trials=tuple(programs), reason=reason))
    return TrialAttrs()
