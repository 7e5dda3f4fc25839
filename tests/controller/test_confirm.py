"""The confirm stage in the loop: a candidate that beats its parent is re-run with more seeds, and the
Welch test on the seeds makes it a parent of record."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from controller.cli.app import app
from controller.config import load_campaign
from controller.store.archive import Operation
from controller.store.records import rebuild_archive
from controller.store.study import CampaignStudy
from tests.controller.campaigns import UNIGRAM_TRAINER, knob_line


def poorly_smoothed_seed(folder) -> object:
    """The unigram trainer with a bad default (heavy smoothing), so a knob line clearly beats it."""
    source = UNIGRAM_TRAINER.read_text(encoding="utf-8")
    default = 'Knob("SMOOTHING", float, 0.5,'
    assert default in source
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "unigram_trainer.py"
    path.write_text(source.replace(default, 'Knob("SMOOTHING", float, 10.0,'), encoding="utf-8")
    return path


@pytest.mark.slow
def test_a_clear_improvement_is_confirmed_with_extra_seeds_and_promoted(
    make_campaign, run_campaign, tmp_path
):
    toml = make_campaign(
        # Later lines are worse than any parent, so only trial 1 challenges the seed.
        replay=[knob_line("much less smoothing", SMOOTHING=0.3)]
        + [knob_line(f"smoothing {s}", SMOOTHING=s) for s in (50.0, 60.0, 70.0)],
        seed_program=poorly_smoothed_seed(tmp_path / "seed"),
        proxy={"seeds_to_confirm": 2, "min_delta_nats": 0.0, "p_value": 0.5},
        max_trials=6,
    )
    run_campaign(toml)

    study = CampaignStudy.from_config(load_campaign(toml))
    trials = study.trials()
    improved = trials[1]
    assert improved.attrs.hypothesis == "much less smoothing"
    assert improved.value < trials[0].value - 0.01  # clearly better than the seed
    confirms = [t for t in trials if t.attrs.operation == str(Operation.CONFIRM)]
    # One extra seed for the challenger and one for the incumbent (each already has its scored run).
    assert sorted(t.attrs.confirm_of for t in confirms) == [0, 1]
    assert all(t.state == "COMPLETE" for t in confirms)
    assert {t.attrs.seed for t in confirms} == {1338}
    assert [t.attrs.promotes for t in confirms if t.attrs.promotes is not None] == [1]

    archive = rebuild_archive(trials)
    assert archive.get(1).confirmed
    assert len(archive.get(1).seed_bpbs) == 2 and len(archive.get(0).seed_bpbs) == 2
    assert archive.incumbent("proxy").trial == 1
    rows = json.loads(CliRunner().invoke(app, ["leaderboard", str(toml), "--json"]).output)
    assert rows[0]["trial"] == 1 and rows[0]["confirmed"] is True


@pytest.mark.slow
def test_a_candidate_no_better_than_its_parent_gets_no_confirm_runs(make_campaign, run_campaign, tmp_path):
    toml = make_campaign(
        replay=[knob_line("even more smoothing", SMOOTHING=50.0)],
        seed_program=poorly_smoothed_seed(tmp_path / "seed"),
        proxy={"seeds_to_confirm": 2, "min_delta_nats": 0.0, "p_value": 0.5},
        max_trials=2,
    )
    run_campaign(toml)

    trials = CampaignStudy.from_config(load_campaign(toml)).trials()
    assert trials[1].value > trials[0].value
    assert not [t for t in trials if t.attrs.operation == str(Operation.CONFIRM)]
    assert not rebuild_archive(trials).get(1).confirmed
