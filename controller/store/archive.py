"""Every scored candidate of a campaign, its total order, the best-K frontier and parent selection.

:class:`Candidate` is the controller's frozen record of one scored program; it is what crosses module
boundaries (never an Optuna trial). Candidates order so that ``min()`` is the best: feasible, ok and
unsuspicious first, then lower mean BPB, fewer artifact bytes, earlier trial (after AIDE's
``MetricValue``, which gives results a comparison instead of re-deriving "best" at each use).

A candidate whose gain looked implausible (``suspicious``) is held out of the parent pool until one of
its runs passes the full integrity probe (``verified``); one whose later run failed an integrity check
is discredited: ``suspicious`` says which run and check, and no verification lifts that.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

# Operation is defined by the agent package (its ProposalContext carries one, and the agent may not
# import the controller); re-exported so the controller imports it with the records that use it.
from agent.proposal import Operation
from sandbox.spec import RunStatus, StepExtent, step_extent

__all__ = ["Archive", "Candidate", "Operation"]


@dataclass(frozen=True)
class Candidate:
    """One scored program: a commit in the git store and a trial in the study share ``trial``.

    ``val_bpb`` is the mean over ``seed_bpbs`` when those are given. ``seed_val_losses`` are the same
    runs in nats per token: the confirm stage compares those, because the challenge states its
    threshold in nats (CHALLENGE.md). Metrics are ``None`` when the status says the run did not count.
    """

    trial: int
    commit: str
    parent_trial: int | None  # None for the seed
    tier: str
    status: RunStatus
    val_bpb: float | None = None
    seed_bpbs: tuple[float, ...] = ()
    seed_val_losses: tuple[float, ...] = ()
    artifact_bytes: int | None = None
    train_seconds: float | None = None
    feasible: bool = True  # within the tier's artifact-byte and train-second limits
    hypothesis: str = ""
    operation: Operation = Operation.MUTATE
    confirmed: bool = False  # a parent "of record": it passed the confirm stage's Welch test
    suspicious: str = ""  # why a plausibility check failed; non-empty keeps it out of the parent pool
    verified: bool = False  # a run of this program passed the full integrity probe
    discredited: bool = False  # a later run failed an integrity check: never a parent again
    # Its score is the program's own log line (a program run as published, without the run contract):
    # shown beside the others, never a parent, never confirmed, never verified.
    self_reported: bool = False
    # A stack's second parent: the win whose change was replayed onto parent_trial's program.
    second_parent_trial: int | None = None
    # An ablation of this win found a part of its change that carries no gain: the ablated program
    # (that trial) took its place as the program of record, so this one leaves the parent pool.
    superseded_by: int | None = None
    knob_values: Mapping[str, str] = field(default_factory=dict, compare=False)
    # Steps its (first) run trained and was planned to (RunResult.steps, steps_planned): a run cut
    # short of its plan is not comparable with one that trained all of it (sandbox.steps).
    steps: int | None = None
    steps_planned: int | None = None

    def __post_init__(self) -> None:
        if self.seed_bpbs and self.val_bpb is None:
            object.__setattr__(self, "val_bpb", math.fsum(self.seed_bpbs) / len(self.seed_bpbs))
        for name in ("val_bpb", "train_seconds"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"candidate {self.trial}: {name} = {value} is not finite")
        if self.status is RunStatus.OK and self.val_bpb is None:
            raise ValueError(f"candidate {self.trial}: an ok candidate needs val_bpb or seed_bpbs")

    @property
    def eligible(self) -> bool:
        """May be a parent and sit on the frontier: it counted, fits the limits and looks honest (or a
        suspiciously large gain was verified by the full integrity probe)."""
        return (
            self.status is RunStatus.OK
            and self.feasible
            and not self.discredited
            and not self.self_reported
            and self.superseded_by is None
            and (not self.suspicious or self.verified)
            and self.val_bpb is not None
        )

    @property
    def step_extent(self) -> StepExtent | None:
        """Whether its run trained the planned steps, was cut short or went past them (None: unknown)."""
        return step_extent(self.status, self.steps, self.steps_planned)

    @property
    def held(self) -> bool:
        """Scored and within the limits but suspicious: waiting for a run with the full probe."""
        return (
            self.status is RunStatus.OK
            and self.feasible
            and bool(self.suspicious)
            and not (self.verified or self.discredited or self.self_reported)
        )

    def sort_key(self) -> tuple[int, float, float, int]:
        return (
            0 if self.eligible else 1,
            self.val_bpb if self.val_bpb is not None else math.inf,
            self.artifact_bytes if self.artifact_bytes is not None else math.inf,
            self.trial,
        )

    def __lt__(self, other: Candidate) -> bool:
        return self.sort_key() < other.sort_key()

    def __le__(self, other: Candidate) -> bool:
        return self.sort_key() <= other.sort_key()

    def __gt__(self, other: Candidate) -> bool:
        return self.sort_key() > other.sort_key()

    def __ge__(self, other: Candidate) -> bool:
        return self.sort_key() >= other.sort_key()


class Archive:
    """All candidates of a campaign by trial number. Adding a trial again replaces it (e.g. confirmed)."""

    def __init__(self, candidates: Iterable[Candidate] = ()) -> None:
        self._by_trial: dict[int, Candidate] = {}
        for candidate in candidates:
            self.add(candidate)

    def add(self, candidate: Candidate) -> None:
        self._by_trial[candidate.trial] = candidate

    def get(self, trial: int) -> Candidate:
        try:
            return self._by_trial[trial]
        except KeyError:
            raise KeyError(f"trial {trial} is not in the archive ({len(self)} candidates)") from None

    def __contains__(self, trial: object) -> bool:
        return trial in self._by_trial

    def __len__(self) -> int:
        return len(self._by_trial)

    def __iter__(self) -> Iterator[Candidate]:
        return iter(sorted(self._by_trial.values(), key=lambda c: c.trial))

    def frontier(self, k: int, tier: str | None = None) -> list[Candidate]:
        """The best ``k`` eligible candidates, best first; only those of ``tier`` when given
        (scores from different tiers are not comparable)."""
        pool = [c for c in self._by_trial.values() if c.eligible and (tier is None or c.tier == tier)]
        return sorted(pool)[:k]

    def best(self, tier: str | None = None) -> Candidate | None:
        top = self.frontier(1, tier)
        return top[0] if top else None

    def incumbent(self, tier: str | None = None) -> Candidate | None:
        """The best confirmed candidate: what a challenger must beat in the confirm stage."""
        confirmed = [c for c in self.frontier(len(self), tier) if c.confirmed]
        return confirmed[0] if confirmed else None

    def root_of(self, candidate: Candidate) -> Candidate:
        """The seed program this candidate descends from (the campaign may have several roots)."""
        seen = {candidate.trial}
        while candidate.parent_trial is not None and candidate.parent_trial in self:
            candidate = self.get(candidate.parent_trial)
            if candidate.trial in seen:
                break
            seen.add(candidate.trial)
        return candidate

    def seed_bpb(self, candidate: Candidate, tier: str) -> float | None:
        """The harness-measured BPB of ``candidate``'s seed program on ``tier``: the root's own run, or
        the record a confirm run made for it there. None when it has not run on that tier."""
        root = self.root_of(candidate)
        if root.tier == tier:
            return root.val_bpb
        for record in self:
            if (
                record.operation is Operation.CONFIRM
                and record.parent_trial == root.trial
                and record.tier == tier
            ):
                return record.val_bpb
        return None

    def children_of(self, trial: int) -> list[Candidate]:
        """Every recorded child of ``trial``, failed ones included, in trial order."""
        return [c for c in self if c.parent_trial == trial]

    def child_counts(self) -> Counter[int]:
        return Counter(c.parent_trial for c in self._by_trial.values() if c.parent_trial is not None)

    def parent_weights(
        self,
        k: int,
        child_bonus: float,
        tier: str | None = None,
        pending_children: Mapping[int, int] | None = None,
    ) -> list[tuple[Candidate, float]]:
        """The frontier with each member's selection weight (unnormalised), best first.

        weight = 1 / (1 + rank) * (1 + child_bonus / (1 + children)). The rank term prefers better
        candidates without depending on the scale of BPB differences; the bonus term favours members
        that have been tried little, and decays to 1 (never to 0) as children accumulate, so the best
        stays attractive. Variant of ShinkaEvolve's weighted parent sampling (Lange et al., 2025), which
        multiplies a fitness score by 1 / (1 + children). ``pending_children`` counts children still
        running so parallel workers do not all pick the same parent.
        """
        counts = self.child_counts()
        for trial, extra in (pending_children or {}).items():
            counts[trial] += extra
        return [
            (c, (1.0 / (1 + rank)) * (1.0 + child_bonus / (1 + counts[c.trial])))
            for rank, c in enumerate(self.frontier(k, tier))
        ]

    def select_parent(
        self,
        rng: random.Random,
        k: int,
        child_bonus: float,
        tier: str | None = None,
        pending_children: Mapping[int, int] | None = None,
    ) -> Candidate:
        """Draw a parent among the best ``k`` (see :meth:`parent_weights`); deterministic for a seeded rng.

        Raises ``LookupError`` when no eligible candidate exists yet (score the seed program first).
        """
        weighted = self.parent_weights(k, child_bonus, tier, pending_children)
        if not weighted:
            where = f" on tier {tier!r}" if tier else ""
            raise LookupError(
                f"no eligible parent{where} among {len(self)} candidates; score the seed program first"
            )
        candidates, weights = zip(*weighted, strict=True)
        return rng.choices(candidates, weights=weights)[0]
