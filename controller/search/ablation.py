"""Ablate: a confirmed win re-run with one part of its change left out, to learn which parts carry the
gain (issue 15). No LLM: the parts are read off the change itself (controller.search.changes).

Parts are the code hunks of the win's program against its base (difflib's grouped opcodes with three
lines of context, the hunks of a unified diff; knob defaults set back to the base's first, so a tuned
value never shows as code) and each knob whose default differs from the base's. An ablation leaves out
one part: that hunk back to the base's lines, or that knob back to the base's value. A win is ablated
only when its change has two parts or more (with one, the ablation is the base, already measured).

Judging, with the campaign's own statistics and with noise in mind. The ablation's first run (the
explore tier's seed, the one the win's first run had) is compared with the win's BPB: worse by more
than twice the spread of the win's seeds, the part carries gain and nothing more is spent. Otherwise
the ablation gets the confirm tier's seeds like any challenger, and the part carries no gain when the
win does not beat its ablation in the one-sided Welch test at the confirm tier's ``p_value`` and the
ablation's mean loss is no more than ``min_delta_nats`` (what counts as a win) above the win's. Then
the part is dropped from the program of record: the ablation (a smaller change) becomes a parent of
record and the win is superseded, out of the parent pool (the trial that decided carries ``drops``).
"""

from __future__ import annotations

import difflib
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.proposal import GiveUp, Proposal, ProposerKind
from controller.search.changes import change_base, code_of, knob_defaults, wins, with_knobs
from controller.search.stats import welch_one_sided
from controller.search.trial import TrialPlan
from controller.store.archive import Archive, Candidate, Operation
from controller.store.study import TrialRecord
from controller.store.trial_attrs import TrialAttrs
from sandbox.knobs import KnobTableError

if TYPE_CHECKING:
    from controller.search.confirm import ConfirmBook
    from controller.search.planning import Planner

_CONTEXT_LINES = 3  # as a unified diff's: changes closer than this are one hunk
_NOISE_SPREADS = 2.0  # a first run worse than the win by more than this many seed spreads: part kept


@dataclass(frozen=True)
class Part:
    """One independent part of a change: a knob (``knob``) or a code hunk (``hunk``, 0-based)."""

    label: str  # stable for a given win and base: the study's ``ablated_part``
    knob: str | None = None
    hunk: int | None = None


def _hunks(
    base: str, code: str
) -> tuple[list[str], list[str], list[tuple[str, int, int, int, int]], list[set]]:
    a, b = base.splitlines(keepends=True), code.splitlines(keepends=True)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    opcodes = list(matcher.get_opcodes())  # a copy: grouping trims the cached list's ends in place
    groups = [
        {op for op in group if op[0] != "equal"} for group in matcher.get_grouped_opcodes(_CONTEXT_LINES)
    ]
    return a, b, opcodes, [g for g in groups if g]


def change_parts(base: str, win: str, entry: str) -> list[Part]:
    """The parts of ``win``'s change against ``base``: every changed knob, then every code hunk."""
    base_knobs, win_knobs = knob_defaults(base, entry), knob_defaults(win, entry)
    parts = [
        Part(label=f"knob {name}={value!r} (base {base_knobs[name]!r})", knob=name)
        for name, value in win_knobs.items()
        if name in base_knobs and base_knobs[name] != value
    ]
    try:
        code = code_of(win, base, entry)
    except KnobTableError:
        return parts
    _, _, _, groups = _hunks(base, code)
    for index, group in enumerate(groups):
        first = min(op[1] for op in group) + 1
        last = max(op[2] for op in group)
        where = f"line {first}" if last <= first else f"lines {first}-{last}"
        parts.append(Part(label=f"code hunk {index + 1} of {len(groups)} ({where} of the base)", hunk=index))
    return parts


def without_part(base: str, win: str, part: Part, entry: str) -> str:
    """``win``'s program with ``part`` of its change back as it is in ``base``."""
    base_knobs, win_knobs = knob_defaults(base, entry), knob_defaults(win, entry)
    if part.knob is not None:
        return with_knobs(win, {part.knob: base_knobs[part.knob]}, entry)
    a, b, opcodes, groups = _hunks(base, code_of(win, base, entry))
    reverted = groups[part.hunk or 0]
    lines: list[str] = []
    for op in opcodes:
        tag, i1, i2, j1, j2 = op
        lines.extend(a[i1:i2] if tag == "equal" or op in reverted else b[j1:j2])
    return with_knobs("".join(lines), win_knobs, entry)  # the win's knob changes stay


def tried_parts(trials: tuple[TrialRecord, ...]) -> set[tuple[int, str]]:
    """(win, part) of every ablation trial in the study, whatever came of it."""
    return {
        (t.attrs.parent_trial, t.attrs.ablated_part)
        for t in trials
        if t.attrs.operation is Operation.ABLATE
        and t.attrs.parent_trial is not None
        and t.attrs.ablated_part is not None
    }


class Ablator:
    """The planner's ablate operation: the best win with a part not yet left out, as a plan."""

    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self.taken: set[tuple[int, str]] = set()  # (win, part) a plan was made for by this process
        self._parts: dict[tuple[str, str], list[Part]] = {}  # (base commit, win commit) -> parts

    def _parts_of(self, base: Candidate, win: Candidate) -> list[Part]:
        key = (base.commit, win.commit)
        if key not in self._parts:
            store, entry = self.planner.ws.store, self.planner.ws.entry
            base_source = store.files_at(base.commit).get(entry, "")
            win_source = store.files_at(win.commit).get(entry, "")
            self._parts[key] = change_parts(base_source, win_source, entry)
        return self._parts[key]

    def _next(self) -> tuple[Candidate, Candidate, Part] | None:
        """(win, base, part) to ablate next (call under the state lock)."""
        state = self.planner.state
        candidates = [w for w in wins(state.archive, state.explore) if w.operation is not Operation.ABLATE]
        if not candidates:  # no study read while there is nothing to ablate
            return None
        tried = tried_parts(state.ws.study.trials()) | self.taken
        for win in candidates:
            base = change_base(state.archive, win)
            if base is None:
                continue
            parts = self._parts_of(base, win)
            if len(parts) < 2:
                continue
            for part in parts:
                if (win.trial, part.label) not in tried:
                    return win, base, part
        return None

    def ready(self) -> bool:
        """Whether a win has a part to leave out (call under the state lock)."""
        return self._next() is not None

    def plan(self) -> TrialPlan | None:
        planner, state, ws = self.planner, self.planner.state, self.planner.ws
        with state.lock:
            found = self._next()
            if found is None:
                return None
            win, base, part = found
            self.taken.add((win.trial, part.label))
            reservation = state.inflight.reserve(win.trial)
        entry = ws.entry
        attrs = TrialAttrs(ablated_part=part.label)
        try:
            source = without_part(
                ws.store.files_at(base.commit)[entry], ws.store.files_at(win.commit)[entry], part, entry
            )
        except KnobTableError as exc:  # e.g. the hunk that declares a knob whose value another part sets
            reservation.release()
            reason = f"{part.label} cannot be left out alone: {exc}"
            planner._record_give_up(win, Operation.ABLATE, GiveUp(reason=reason, turns=0), attrs=attrs)
            return None
        # The crash check only: an ablation that computes what the win computes is the answer sought,
        # not an inert proposal to send back.
        report = planner._smoke(source, None) if planner.config.search.preflight_smoke else None
        if report is not None and not report.ok:
            reservation.release()
            reason = (
                f"without {part.label}, trial {win.trial}'s program fails its preflight at stage "
                f"'{report.stage}': {report.reason} (the part is needed)"
            )
            planner._record_give_up(win, Operation.ABLATE, GiveUp(reason=reason, turns=0), attrs=attrs)
            return None
        proposal = Proposal(
            hypothesis=f"Ablate trial {win.trial}: leave out {part.label}",
            rationale=(
                f"Which parts of trial {win.trial}'s change ({win.hypothesis}) carry its gain: the same "
                f"program with {part.label} as trial {base.trial} has it."
            ),
            files={entry: source},
            proposer=ProposerKind.ABLATE,
            turns=0,
        )
        return TrialPlan(
            Operation.ABLATE, state.explore, win, proposal, reservation=reservation, ablated_part=part.label
        )


@dataclass(frozen=True)
class _Open:
    ablation: int
    win: int
    part: str


@dataclass(frozen=True)
class AblationVerdict:
    ablation: Candidate
    win: Candidate
    part: str
    dropped: bool  # the part carries no gain: the ablation replaces the win as the program of record
    text: str


class AblationBook:
    """Ablations waiting for their seeds, and the verdict on each (the module docstring's rule)."""

    def __init__(self) -> None:
        self.open: list[_Open] = []

    def after_explore(
        self, archive: Archive, ablation: Candidate, part: str, confirms: ConfirmBook
    ) -> tuple[list[TrialPlan], str]:
        """The confirm runs an ablation's first result calls for, and what it says so far."""
        if ablation.parent_trial is None or ablation.parent_trial not in archive:
            return [], ""
        win = archive.get(ablation.parent_trial)
        head = f"trial {ablation.trial}: without {part}, trial {win.trial}"
        if not ablation.eligible or ablation.val_bpb is None or win.val_bpb is None:
            return [], f"{head} did not score ({ablation.status}): the part stays"
        record = confirms.record_for(archive, win)
        seeds = record.seed_bpbs if record is not None else ()
        spread = statistics.stdev(seeds) if len(seeds) >= 2 else 0.0
        excess = ablation.val_bpb - win.val_bpb
        if excess > _NOISE_SPREADS * spread:
            return [], (
                f"{head} scores {excess:+.4f} bpb worse, beyond the noise of its seeds "
                f"({_NOISE_SPREADS:g} x {spread:.4f}): the part carries gain and stays"
            )
        self.open.append(_Open(ablation.trial, win.trial, part))
        return confirms.more_seeds(archive, ablation), (
            f"{head} scores {excess:+.4f} bpb, within the noise of its seeds: more seeds decide"
        )

    def judge(self, archive: Archive, confirms: ConfirmBook) -> list[AblationVerdict]:
        """Decide every open ablation whose program and win have all their seeds."""
        verdicts, still_open = [], []
        need = confirms.tier.seeds_to_confirm
        for item in self.open:
            if item.ablation not in archive or item.win not in archive:
                continue
            ablation, win = archive.get(item.ablation), archive.get(item.win)
            mine, theirs = confirms.record_for(archive, ablation), confirms.record_for(archive, win)
            if (
                mine is None
                or theirs is None
                or len(mine.seed_val_losses) < need
                or len(theirs.seed_val_losses) < need
            ):
                if confirms.scheduled[ablation.commit] or confirms.scheduled[win.commit]:
                    still_open.append(item)
                continue
            head = f"ablation {ablation.trial} of trial {win.trial} ({item.part})"
            if not (ablation.eligible and ablation.verified):
                verdicts.append(
                    AblationVerdict(ablation, win, item.part, False, f"{head}: not verified; kept")
                )
                continue
            # H1 of the test: the win beats its ablation, i.e. the part carries gain.
            test = welch_one_sided(theirs.seed_val_losses, mine.seed_val_losses, 0.0)
            harm = test.delta_mean  # mean loss without the part minus with it (nats)
            carries = test.passes(confirms.tier.p_value) or harm > confirms.tier.min_delta_nats
            numbers = f"Δ {harm:+.4f} nats without it, p = {test.p_value:.3g} over {need} seeds"
            text = (
                f"{head}: the part carries gain ({numbers}); kept"
                if carries
                else f"{head}: the part carries no gain ({numbers}); dropped, trial {ablation.trial} "
                f"replaces trial {win.trial} as the program of record"
            )
            verdicts.append(AblationVerdict(ablation, win, item.part, not carries, text))
        self.open = still_open
        return verdicts
