"""The program-level parts of stack and ablate, without a campaign: the three-way merge with its knob
union (controller.search.stacking) and a change's parts (controller.search.ablation)."""

from __future__ import annotations

from controller.search.ablation import change_parts, without_part
from controller.search.stacking import merge_change
from tests.controller.campaigns import UNIGRAM_TRAINER

ENTRY = "unigram_trainer.py"
BASE = UNIGRAM_TRAINER.read_text(encoding="utf-8")
LABELS = ("ours", "base", "theirs")


def knob(source: str, name: str, old: str, new: str) -> str:
    return source.replace(f'Knob("{name}", float, {old},', f'Knob("{name}", float, {new},')


def test_merge_takes_both_code_changes_and_the_union_of_knobs_on_adjacent_table_lines():
    ours = knob(BASE, "SMOOTHING", "0.5", "0.2").replace("    steps = 4\n", "    steps = 2\n")
    theirs = knob(BASE, "SLEEP_SECONDS", "0.0", "0.1").replace(
        'ARTIFACT_NAME = "unigram_counts.zlib"', 'ARTIFACT_NAME = "counts.zlib"'
    )
    merged = merge_change(BASE, ours, theirs, entry=ENTRY, labels=LABELS)
    assert merged.clean and merged.knobs == {"SMOOTHING": 0.2, "SLEEP_SECONDS": 0.1}
    expected = knob(ours, "SLEEP_SECONDS", "0.0", "0.1").replace("unigram_counts.zlib", "counts.zlib")
    assert merged.source == expected


def test_a_knob_both_changed_to_different_values_is_a_conflict():
    merged = merge_change(
        BASE,
        knob(BASE, "SMOOTHING", "0.5", "0.2"),
        knob(BASE, "SMOOTHING", "0.5", "0.3"),
        entry=ENTRY,
        labels=LABELS,
    )
    assert not merged.clean and merged.code_conflicts == 0
    assert merged.knob_conflicts == {"SMOOTHING": (0.2, 0.3)}
    assert "knob SMOOTHING" in merged.describe()


def test_the_same_knob_value_on_both_sides_is_no_conflict():
    both = knob(BASE, "SMOOTHING", "0.5", "0.2")
    merged = merge_change(
        BASE, both, both.replace("    steps = 4\n", "    steps = 3\n"), entry=ENTRY, labels=LABELS
    )
    assert merged.clean and "    steps = 3\n" in merged.source and "float, 0.2," in merged.source


def test_a_hunk_both_changed_comes_back_with_git_markers_around_it():
    line = "    total = sum(counts) + smoothing * len(counts)\n"
    ours = BASE.replace(line, line.replace("smoothing *", "0.5 * smoothing *"))
    theirs = BASE.replace(line, line.replace("smoothing *", "0.6 * smoothing *"))
    merged = merge_change(BASE, ours, theirs, entry=ENTRY, labels=LABELS)
    assert merged.code_conflicts == 1
    regions = merged.describe()
    assert "<<<<<<< ours" in regions and ">>>>>>> theirs" in regions and "0.6 * smoothing" in regions
    assert "def read_shard" not in regions  # only the conflict and a few lines around it


def test_parts_are_each_changed_knob_and_each_code_hunk_and_each_can_be_left_out():
    win = knob(BASE, "SMOOTHING", "0.5", "0.2").replace("    steps = 4\n", "    steps = 2\n")
    win = win.replace('ARTIFACT_NAME = "unigram_counts.zlib"', 'ARTIFACT_NAME = "counts.zlib"')
    parts = change_parts(BASE, win, ENTRY)
    assert [p.label for p in parts] == [
        "knob SMOOTHING=0.2 (base 0.5)",
        "code hunk 1 of 2 (line 41 of the base)",
        "code hunk 2 of 2 (line 103 of the base)",
    ]
    without_knob, without_name, without_steps = (without_part(BASE, win, p, ENTRY) for p in parts)
    assert without_knob == win.replace("float, 0.2,", "float, 0.5,", 1)
    assert without_name == win.replace("counts.zlib", "unigram_counts.zlib")
    assert without_steps == win.replace("    steps = 2\n", "    steps = 4\n")


def test_a_change_of_one_knob_has_one_part():
    assert len(change_parts(BASE, knob(BASE, "SMOOTHING", "0.5", "0.2"), ENTRY)) == 1
