"""A proposal that changes what the program writes to the scored files runs with the full integrity
probe, and its trial records why; an ordinary one keeps the prefix probe."""

from __future__ import annotations

import pytest

from controller.store.records import rebuild_archive
from tests.controller.campaigns import edit_line, knob_line
from tests.controller.test_loop import open_results

# The unigram trainer's eval, edited to score with half the smoothing it trained with: honest, but it
# changes the numbers evaluate writes to val_nll.f32.
EVAL_SMOOTHING = """    logp = log_probs(counts, cfg["SMOOTHING"])
    val = load_split(cfg["DATA_PATH"], "val")"""
HALF_AT_EVAL = """    logp = log_probs(counts, cfg["SMOOTHING"] * 0.5)
    val = load_split(cfg["DATA_PATH"], "val")"""


@pytest.mark.slow
def test_a_scoring_change_runs_with_the_full_probe_and_its_trial_records_the_reason(
    make_campaign, run_campaign
):
    toml = make_campaign(
        replay=[
            edit_line("score with half the smoothing", EVAL_SMOOTHING, HALF_AT_EVAL),
            knob_line("a little smoother", SMOOTHING=0.6),
        ],
        max_trials=3,
        preflight_smoke=False,
    )
    _, said = run_campaign(toml)
    _, study, _ = open_results(toml)
    seed, scoring, knobs = study.trials()
    assert scoring.state == "COMPLETE" and scoring.attrs.hypothesis == "score with half the smoothing", said
    assert scoring.attrs.scoring_change.startswith("edits `evaluate`, which writes val_nll.f32, ")
    archive = rebuild_archive(study.trials())
    assert archive.get(scoring.number).verified  # only a run with the full probe is verified
    assert knobs.state == "COMPLETE" and knobs.attrs.scoring_change == ""
    assert not archive.get(knobs.number).verified
