"""The integrity probes inside the search loop: a look-ahead the agent writes never scores, and a gain
too good to believe waits for a confirm run's full probe before it may be a parent."""

from __future__ import annotations

import pytest

from controller.store.records import rebuild_archive
from tests.controller.campaigns import edit_line, knob_line
from tests.controller.test_loop import open_results

# The unigram trainer's eval, edited to count the validation tokens it is about to score into its model.
EVAL_MODEL = """    logp = log_probs(counts, cfg["SMOOTHING"])
    val = load_split(cfg["DATA_PATH"], "val")"""
LOOK_AHEAD = """    val = load_split(cfg["DATA_PATH"], "val")
    for token in val:  # "adapt" on the whole stream before scoring it
        counts[token] += 1
    logp = log_probs(counts, cfg["SMOOTHING"])"""


def test_a_look_ahead_edit_is_refused_naming_the_check_and_never_becomes_a_parent(
    make_campaign, run_campaign
):
    toml = make_campaign(
        replay=[edit_line("test-time training on the validation stream", EVAL_MODEL, LOOK_AHEAD)],
        max_trials=2,
        preflight_smoke=False,  # the sandbox's own probe, not the CPU smoke run, must catch it here
    )
    run_campaign(toml)
    _, study, store = open_results(toml)
    seed, cheat = study.trials()
    assert seed.state == "COMPLETE" and cheat.state == "FAIL"
    assert cheat.attrs.status == "invalid"
    assert cheat.attrs.status_reason.startswith("integrity check 'causality' failed:")
    archive = rebuild_archive(study.trials())
    assert [c.trial for c in archive.frontier(3)] == [0] and store.frontier()  # only the seed


def test_the_smoke_run_catches_the_look_ahead_before_the_explore_tier(make_campaign, run_campaign):
    toml = make_campaign(
        replay=[edit_line("test-time training on the validation stream", EVAL_MODEL, LOOK_AHEAD)],
        max_trials=2,
    )
    run_campaign(toml)
    _, study, _ = open_results(toml)
    cheat = study.trials()[1]
    assert cheat.state == "FAIL" and "integrity check 'causality' failed" in cheat.attrs.status_reason


@pytest.mark.slow
def test_an_implausible_gain_is_held_until_a_confirm_runs_full_probe_verifies_it(make_campaign, run_campaign):
    """Any gain at all counts as implausible here, so the better smoothing is held; its confirm runs carry
    the full probe, which an honest program passes, and it then sits on the frontier."""
    toml = make_campaign(
        replay=[knob_line("a little sharper", SMOOTHING=0.3)],
        max_trials=6,
        tables={"plausibility": {"max_gain_over_parent_bpb": 0.0, "max_gain_over_seed_bpb": 0.0}},
        proxy={"seeds_to_confirm": 2, "min_delta_nats": 0.0, "p_value": 0.5},
    )
    _, said = run_campaign(toml)
    _, study, _ = open_results(toml)
    trials = study.trials()
    assert [t.attrs.operation for t in trials[:2]] == ["seed", "mutate"], said
    archive = rebuild_archive(trials)
    child = archive.get(1)
    assert "beats the parent's" in child.suspicious and child.verified and child.eligible, said
    verifying = [t for t in trials if t.attrs.verifies == 1]
    assert verifying and all(t.attrs.operation == "confirm" for t in verifying)
    assert archive.best("proxy").trial == 1
