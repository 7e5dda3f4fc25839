"""The report's charts and tables on hand-made trials: whole-number trial ticks, pruned trials drawn,
and pruned trials counted apart from failed ones."""

from __future__ import annotations

import re
from datetime import datetime
from types import SimpleNamespace

from controller.review.report import HEIGHT, MARGIN_BOTTOM, bpb_over_trials, integer_ticks, operation_table
from controller.store.archive import Archive, Candidate, Operation
from controller.store.study import TrialRecord
from controller.store.trial_attrs import TrialAttrs
from sandbox.spec import RunStatus


def candidate(trial: int, bpb: float) -> Candidate:
    return Candidate(
        trial=trial,
        commit=f"{trial:040x}",
        parent_trial=None if trial == 0 else 0,
        tier="proxy",
        status=RunStatus.OK,
        seed_bpbs=(bpb,),
        operation=Operation.SEED if trial == 0 else Operation.TUNE,
    )


def x_labels(svg: str) -> list[str]:
    return re.findall(rf'y="{HEIGHT - MARGIN_BOTTOM + 15}" text-anchor="middle">([^<]*)</text>', svg)


def test_trial_ticks_are_whole_numbers_each_shown_once():
    for count in (2, 3, 5, 12, 40):
        scored = [candidate(n, 2.0 - 0.01 * n) for n in range(count)]
        labels = x_labels(bpb_over_trials(scored))
        assert labels and all(label.isdigit() for label in labels), labels
        assert len(labels) == len(set(labels)), labels
    assert integer_ticks(-0.55, 11.55) == [0.0, 3.0, 6.0, 9.0]
    assert integer_ticks(0.2, 0.8) == [0.0]


def test_pruned_trials_are_drawn_and_counted_apart_from_failures():
    scored = [candidate(n, 2.0 - 0.01 * n) for n in (0, 1, 2, 4)]
    svg = bpb_over_trials(scored, pruned=[3, 5])
    assert "trial 3: pruned" in svg and "trial 5: pruned" in svg and "pruned (no score)" in svg

    def record(number: int, state: str) -> TrialRecord:
        when = datetime(2026, 1, 1)
        attrs = TrialAttrs(operation=Operation.TUNE if number else Operation.SEED)
        return TrialRecord(number, state, None, {}, attrs, {}, {}, when, when)

    states = {0: "COMPLETE", 1: "COMPLETE", 2: "PRUNED", 3: "PRUNED", 4: "FAIL"}
    archive = Archive()
    for c in scored[:2]:
        archive.add(c)
    table = operation_table(
        SimpleNamespace(trials=[record(n, s) for n, s in states.items()], archive=archive)
    )
    assert "<th>failed</th><th>pruned</th>" in table
    tune = table.split("<td class='text'>tune</td>", 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r"<td>([^<]*)</td>", tune)
    assert cells[:4] == ["4", "1", "1", "2"]  # trials, scored, failed, pruned
