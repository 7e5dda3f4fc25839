"""A confirmed win's change, as the offline operations read it (controller.search.stacking, .ablation).

A win's *change* is its program against the program it changed (its *base*): the parent for a mutate,
tune, hypothesis or stack trial; for an ablation, its win's base (an ablation's parent is the win, and
what it carries is the win's change less one part). A change has two kinds of parts: the defaults of
knobs both programs declare (a tuning trial's values are baked into the knob table, so a knob change
is a default that differs) and the code, compared with the knob defaults put back to the base's so that
a tuned value never shows as a code edit.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.store.archive import Archive, Candidate, Operation
from sandbox.knobs import KnobTableError, KnobValue, parse_knob_table, rewrite_knob_defaults

# Trials whose program is not a change of a win's: the roots, and the re-runs of another program.
NOT_A_CHANGE = (Operation.SEED, Operation.CONFIRM, Operation.ADOPT)


def knob_defaults(source: str, entry: str) -> dict[str, KnobValue]:
    """The program's knob defaults by name; empty for a program without a readable table."""
    try:
        return {k.name: k.default for k in parse_knob_table(source, filename=entry)}
    except (KnobTableError, ValueError, SyntaxError):
        return {}


def with_knobs(source: str, values: Mapping[str, KnobValue], entry: str) -> str:
    """``source`` with the defaults of the knobs it declares among ``values`` set to them."""
    declared = knob_defaults(source, entry)
    present = {name: value for name, value in values.items() if name in declared and declared[name] != value}
    return rewrite_knob_defaults(source, present, filename=entry) if present else source


def code_of(source: str, base: str, entry: str) -> str:
    """``source`` with every knob both declare set back to the base's default: its code change alone."""
    base_knobs = knob_defaults(base, entry)
    return with_knobs(source, {n: v for n, v in base_knobs.items()}, entry)


def change_base(archive: Archive, candidate: Candidate) -> Candidate | None:
    """The program ``candidate``'s change was made on (see the module docstring), or None."""
    seen = {candidate.trial}
    while candidate.parent_trial is not None and candidate.parent_trial in archive:
        parent = archive.get(candidate.parent_trial)
        if candidate.operation is not Operation.ABLATE or parent.trial in seen:
            return parent
        seen.add(parent.trial)
        candidate = parent
    return None


def ancestors(archive: Archive, candidate: Candidate) -> set[int]:
    """Every trial ``candidate`` descends from, through both parents of a stack."""
    found: set[int] = set()
    todo = [candidate]
    while todo:
        current = todo.pop()
        for trial in (current.parent_trial, current.second_parent_trial):
            if trial is not None and trial not in found and trial in archive:
                found.add(trial)
                todo.append(archive.get(trial))
    return found


def gain_bpb(archive: Archive, candidate: Candidate) -> float | None:
    """How much lower ``candidate``'s BPB is than its change's base (positive: better); None unknown."""
    base = change_base(archive, candidate)
    if base is None or base.val_bpb is None or candidate.val_bpb is None or base.tier != candidate.tier:
        return None
    return base.val_bpb - candidate.val_bpb


def wins(archive: Archive, tier: str) -> list[Candidate]:
    """The confirmed wins on ``tier`` that are still parents of record, whose change lowered the BPB,
    best first."""
    found = []
    for candidate in archive.frontier(len(archive), tier):
        if not candidate.confirmed or candidate.operation in NOT_A_CHANGE:
            continue
        gain = gain_bpb(archive, candidate)
        if gain is not None and gain > 0:
            found.append(candidate)
    return found
