"""Stack: two confirmed wins from different lineages combined, by git when git can (issue 15).

The second win's change (its program against its base, controller.search.changes) is replayed onto
the first win's program with a three-way merge (controller.store.merge): code by ``git merge-file``,
knob defaults as a union of both changes, value by value, so that two tuned knobs on adjacent lines of
the table never conflict. A knob both changed, to different values, is a conflict like a hunk both
changed. A clean merge runs as it is. A conflict goes to the LLM as a merge task showing both changes
(prompts/task_stack.txt); without an LLM the pair is recorded as a failed stack trial that says so,
and is never tried again (every stack trial in the study marks its pair as tried).

Pairs are chosen by expected value: both confirmed and still parents of record, neither an ancestor
of the other, not tried before, the largest sum of the two gains first. The better of the two is the
program replayed onto (``parent_trial``); the other is ``second_parent`` in the study and the second
parent of the stack's merge commit in git.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.proposal import GiveUp, MergeTask, Proposal, ProposerKind
from controller.search.changes import ancestors, change_base, gain_bpb, knob_defaults, wins, with_knobs
from controller.search.context import build_context
from controller.search.trial import TrialPlan
from controller.store.archive import Archive, Candidate, Operation
from controller.store.merge import merge_file
from controller.store.study import TrialRecord
from controller.store.trial_attrs import TrialAttrs
from sandbox.knobs import KnobTableError, KnobValue

if TYPE_CHECKING:
    from controller.search.planning import Planner

_CONFLICT_CONTEXT_LINES = 3


@dataclass(frozen=True)
class StackMerge:
    """The merged program. Clean: ``source`` runs as is. Otherwise ``source`` holds git's conflict
    markers and ``knob_conflicts`` the knobs both changes set to different values (ours, theirs)."""

    source: str
    code_conflicts: int
    knob_conflicts: dict[str, tuple[KnobValue, KnobValue]] = field(default_factory=dict)
    knobs: dict[str, KnobValue] = field(default_factory=dict)  # the union applied: knob -> value

    @property
    def clean(self) -> bool:
        return self.code_conflicts == 0 and not self.knob_conflicts

    def describe(self) -> str:
        """What could not be merged, for the merge task and the trial's reason."""
        lines = []
        if self.code_conflicts:
            lines.append(f"{self.code_conflicts} conflicting hunk(s):")
            lines.append(conflict_regions(self.source))
        for name, (ours, theirs) in sorted(self.knob_conflicts.items()):
            lines.append(f"knob {name}: the first sets {ours!r}, the second {theirs!r}")
        return "\n".join(lines)


def merge_change(
    base: str, ours: str, theirs: str, *, entry: str, labels: tuple[str, str, str]
) -> StackMerge:
    """Replay ``theirs``'s change (made on ``base``) onto ``ours``; ``labels`` name the three programs
    in conflict markers. Raises GitStoreError only when git itself fails."""
    base_knobs, our_knobs, their_knobs = (knob_defaults(s, entry) for s in (base, ours, theirs))
    union: dict[str, KnobValue] = {}
    conflicts: dict[str, tuple[KnobValue, KnobValue]] = {}
    for name, was in base_knobs.items():
        if name not in our_knobs or name not in their_knobs:
            continue  # a change removed it: the code merge decides
        mine, other = our_knobs[name], their_knobs[name]
        if mine in (was, other):
            value = other
        elif other == was:
            value = mine
        else:
            conflicts[name] = (mine, other)
            continue
        if value != was:
            union[name] = value
    # Both sides' knob defaults back to the base's: what is left for git is code only.
    neutral = {name: value for name, value in base_knobs.items()}
    merged = merge_file(
        base, with_knobs(ours, neutral, entry), with_knobs(theirs, neutral, entry), labels=labels
    )
    if not merged.clean:
        return StackMerge(merged.text, merged.conflicts, conflicts)
    try:
        source = with_knobs(merged.text, union, entry)
    except KnobTableError as exc:  # the merged table no longer takes a value (a knob's type changed)
        return StackMerge(merged.text, 1, conflicts | {"(knob table)": (str(exc), "")})
    return StackMerge(source, 0, conflicts, union)


def conflict_regions(text: str) -> str:
    """Each conflict of a merged text with a few lines around it, ``...`` between them."""
    lines = text.splitlines()
    keep: set[int] = set()
    start = None
    for index, line in enumerate(lines):
        if line.startswith("<<<<<<< "):
            start = index
        elif line.startswith(">>>>>>> ") and start is not None:
            low = max(0, start - _CONFLICT_CONTEXT_LINES)
            keep.update(range(low, min(len(lines), index + 1 + _CONFLICT_CONTEXT_LINES)))
            start = None
    out: list[str] = []
    previous = None
    for index in sorted(keep):
        if previous is not None and index != previous + 1:
            out.append("...")
        out.append(lines[index])
        previous = index
    return "\n".join(out)


def tried_pairs(trials: tuple[TrialRecord, ...]) -> set[frozenset[int]]:
    """Every pair a stack trial was made for, whatever came of it (a conflict, a crash, a score)."""
    return {
        frozenset((t.attrs.parent_trial, t.attrs.second_parent))
        for t in trials
        if t.attrs.operation is Operation.STACK
        and t.attrs.parent_trial is not None
        and t.attrs.second_parent is not None
    }


def stack_pairs(archive: Archive, tier: str, tried: set[frozenset[int]]) -> list[tuple[Candidate, Candidate]]:
    """Pairs (onto, replayed) worth stacking, by expected value: the sum of both gains, largest first.
    ``onto`` is the better win of the two."""
    found = wins(archive, tier)
    lineage = {c.trial: ancestors(archive, c) for c in found}
    pairs = []
    for i, first in enumerate(found):
        for second in found[i + 1 :]:
            if frozenset((first.trial, second.trial)) in tried:
                continue
            if first.trial in lineage[second.trial] or second.trial in lineage[first.trial]:
                continue  # one already holds the other's change
            value = (gain_bpb(archive, first) or 0.0) + (gain_bpb(archive, second) or 0.0)
            pairs.append((value, first, second))  # found is best first: first is the better one
    pairs.sort(key=lambda p: (-p[0], p[1].trial, p[2].trial))
    return [(first, second) for _, first, second in pairs]


class Stacker:
    """The planner's stack operation: picks a pair, merges, and hands back a plan (or records why not)."""

    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self.taken: set[frozenset[int]] = set()  # pairs a plan was made for by this process

    def _pairs(self) -> list[tuple[Candidate, Candidate]]:
        state = self.planner.state
        if len(wins(state.archive, state.explore)) < 2:  # no study read while there is nothing to pair
            return []
        tried = tried_pairs(state.ws.study.trials()) | self.taken
        return stack_pairs(state.archive, state.explore, tried)

    def ready(self) -> bool:
        """Whether a pair is there to stack (call under the state lock)."""
        return bool(self._pairs())

    def plan(self) -> TrialPlan | None:
        planner, state, ws = self.planner, self.planner.state, self.planner.ws
        with state.lock:
            pairs = self._pairs()
            if not pairs:
                return None
            onto, replayed = pairs[0]
            self.taken.add(frozenset((onto.trial, replayed.trial)))
            base = change_base(state.archive, replayed)
            own_base = change_base(state.archive, onto)
            reservation = state.inflight.reserve(onto.trial)
        assert base is not None  # wins() keeps only candidates with a base
        attrs = TrialAttrs(second_parent=replayed.trial)
        entry = ws.entry
        ours = ws.store.files_at(onto.commit)[entry]
        merge = merge_change(
            ws.store.files_at(base.commit)[entry],
            ours,
            ws.store.files_at(replayed.commit)[entry],
            entry=entry,
            labels=(f"trial {onto.trial}", f"trial {base.trial}", f"trial {replayed.trial}"),
        )
        title = f"Stack trial {replayed.trial} onto trial {onto.trial}: {replayed.hypothesis}"
        rationale = (
            f"Both are confirmed wins from different lineages: trial {onto.trial} ({onto.hypothesis}) and "
            f"trial {replayed.trial} ({replayed.hypothesis}); the second's change is replayed onto the "
            "first's program, to learn whether their gains add up."
        )
        if merge.clean and merge.source == ours:
            reservation.release()
            reason = f"trial {replayed.trial}'s change is already in trial {onto.trial}'s program; nothing to stack"
            planner._record_give_up(onto, Operation.STACK, GiveUp(reason=reason, turns=0), attrs=attrs)
            return None
        if merge.clean:
            report = (
                planner._smoke(merge.source, ours) if self.planner.config.search.preflight_smoke else None
            )
            if report is not None and not report.ok:
                reservation.release()
                reason = f"the merged program failed its preflight at stage '{report.stage}': {report.reason}"
                planner._record_give_up(onto, Operation.STACK, GiveUp(reason=reason, turns=0), attrs=attrs)
                return None
            proposal: Proposal | GiveUp = Proposal(
                hypothesis=title,
                rationale=rationale + _knob_note(merge),
                files={entry: merge.source},
                proposer=ProposerKind.STACK,
                turns=0,
            )
        else:
            try:
                proposal = self._resolve(onto, replayed, base, own_base, merge)
            except BaseException:  # the LLM is down, or the like: no trial; the pair may be tried again
                reservation.release()
                with state.lock:
                    self.taken.discard(frozenset((onto.trial, replayed.trial)))
                raise
        if isinstance(proposal, GiveUp):
            reservation.release()
            planner._record_give_up(onto, Operation.STACK, proposal, attrs=attrs)
            return None
        return TrialPlan(
            Operation.STACK,
            state.explore,
            onto,
            proposal,
            reservation=reservation,
            second_parent=replayed,
        )

    def _resolve(
        self,
        onto: Candidate,
        replayed: Candidate,
        base: Candidate,
        own_base: Candidate | None,
        merge: StackMerge,
    ) -> Proposal | GiveUp:
        """A conflicting merge: the LLM's merge task, or a give-up that says there was none to ask."""
        planner, ws = self.planner, self.planner.ws
        merger = ws.proposers.get(Operation.STACK)
        conflicts = merge.describe()
        if merger is None:
            return GiveUp(
                reason=f"stack conflict, skipped (no LLM to resolve it; [agent] proposer = 'llm' would):\n{conflicts}",
                turns=0,
            )
        task = MergeTask(
            own_hypothesis=onto.hypothesis or f"trial {onto.trial}",
            own_change=ws.store.diff(own_base.commit, onto.commit) if own_base is not None else "",
            replayed_hypothesis=replayed.hypothesis or f"trial {replayed.trial}",
            replayed_change=ws.store.diff(base.commit, replayed.commit),
            conflicts=conflicts,
        )
        with planner.state.lock:
            context = build_context(
                store=ws.store,
                archive=planner.state.archive,
                parent=onto,
                entry=ws.entry,
                operation=Operation.STACK,
                tier=planner.state.explore,
            ).model_copy(update={"merge": task})
        return merger.propose(context, planner._check_program(onto))


def _knob_note(merge: StackMerge) -> str:
    if not merge.knobs:
        return ""
    return " Knob settings of both changes: " + ", ".join(
        f"{k}={v!r}" for k, v in sorted(merge.knobs.items())
    )
