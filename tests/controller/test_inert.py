"""Behaviourally inert proposals: a change whose CPU smoke run computes bit for bit what the parent's does
goes back to the agent as a repair turn and never reaches the explore tier."""

from __future__ import annotations

import pytest

from controller.search.inert import ParentBehaviour, deterministic_smoke, masked_by_smoke
from sandbox import PreflightReport, PreflightStage, preflight
from sandbox.knobs import Knob
from tests.controller.campaigns import edit_line
from tests.controller.test_loop import open_results
from tests.sandbox.conftest import make_program

# A dead branch: reads a setting, changes nothing the program computes.
DEAD_SEARCH = """    logp = log_probs(counts, cfg["SMOOTHING"])
    val = load_split(cfg["DATA_PATH"], "val")"""
DEAD_REPLACE = """    logp = log_probs(counts, cfg["SMOOTHING"])
    if cfg["SMOOTHING"] < 0:  # never true: the knob's range starts at 0.01
        logp = [2 * x for x in logp]
    val = load_split(cfg["DATA_PATH"], "val")"""
SLEEP_KNOB = '    Knob("SLEEP_SECONDS", float, 0.0, low=0.0, high=2.0),'
LIVE_REPLACE = """    logp = log_probs(counts, cfg["SMOOTHING"] * 0.5)
    val = load_split(cfg["DATA_PATH"], "val")"""


def test_two_smoke_runs_of_one_program_share_a_digest_and_a_real_change_does_not(tmp_path, tiny_data):
    from sandbox import DataPaths

    data = DataPaths(dataset_dir=tiny_data.dataset_dir, tokenizer_path=tiny_data.tokenizer_path)
    program = make_program(tmp_path / "program")
    first, again = (preflight(program, data=data, smoke_knobs={}, eval_seq_len=64) for _ in range(2))
    assert first.ok and len(first.behaviour) == 64 and first.behaviour == again.behaviour
    source = (program / "train_gpt.py").read_text()
    (program / "train_gpt.py").write_text(source.replace(DEAD_SEARCH, LIVE_REPLACE))
    assert preflight(program, data=data, smoke_knobs={}, eval_seq_len=64).behaviour != first.behaviour
    (program / "train_gpt.py").write_text("raise SystemExit(3)\nKNOBS = []\n")
    assert preflight(program, data=data, smoke_knobs={}, eval_seq_len=64).behaviour == ""


def test_the_smoke_schedule_follows_steps_only_where_the_tier_caps_them():
    knobs = [Knob(name="MAX_WALLCLOCK_SECONDS", type="float", default=600.0)]
    assert (
        deterministic_smoke({"ITERATIONS": "3", "MAX_WALLCLOCK_SECONDS": "12"}, knobs)[
            "MAX_WALLCLOCK_SECONDS"
        ]
        == "0"
    )
    assert deterministic_smoke({"MAX_WALLCLOCK_SECONDS": "12"}, knobs) == {"MAX_WALLCLOCK_SECONDS": "12"}
    assert deterministic_smoke({"ITERATIONS": "3"}, []) == {"ITERATIONS": "3"}  # no such knob: nothing set


def test_a_default_the_smoke_tier_overrides_cannot_be_called_inert():
    parent = [Knob(name="MODEL_DIM", type="int", default=512), Knob(name="LR", type="float", default=0.04)]
    wider = [Knob(name="MODEL_DIM", type="int", default=768), Knob(name="LR", type="float", default=0.04)]
    assert masked_by_smoke(parent, wider, {"MODEL_DIM": "64"}) == {"MODEL_DIM"}
    assert masked_by_smoke(parent, wider, {"LR": "0.1"}) == set()
    assert masked_by_smoke(parent, parent, {"MODEL_DIM": "64"}) == set()


def test_the_parents_smoke_run_is_made_once_per_parent():
    calls = []

    def run() -> PreflightReport:
        calls.append(1)
        return PreflightReport(ok=True, stage=PreflightStage.PASSED, behaviour="abc")

    cache = ParentBehaviour()
    assert cache.digest("c1", run) == cache.digest("c1", run) == "abc"
    assert cache.digest("c2", run) == "abc" and len(calls) == 2 and len(cache) == 2
    failed = ParentBehaviour()
    assert failed.digest("c", lambda: PreflightReport(ok=False, stage=PreflightStage.SMOKE)) == ""


@pytest.mark.slow
def test_a_dead_branch_is_sent_back_and_never_reaches_the_explore_tier(make_campaign, run_campaign):
    toml = make_campaign(
        replay=[
            edit_line("guard against negative smoothing", DEAD_SEARCH, DEAD_REPLACE),
            edit_line("halve the smoothing", DEAD_SEARCH, LIVE_REPLACE),
            # The smoke tier fixes SLEEP_SECONDS, so its run cannot see this default: not for it to judge.
            edit_line("pace the steps", SLEEP_KNOB, SLEEP_KNOB.replace("0.0, low", "0.05, low")),
        ],
        max_trials=4,
    )
    run_campaign(toml)
    config, study, _ = open_results(toml)
    seed, dead, live, paced = study.trials()
    assert paced.state == "COMPLETE" and paced.attrs.hypothesis == "pace the steps"
    assert dead.state == "FAIL"
    assert "the last: Your change did not change behaviour: in the CPU smoke run" in dead.attrs.status_reason
    assert not (config.run_dir / "trials" / str(dead.number) / "run").exists()  # no explore-tier run
    assert live.state == "COMPLETE" and live.attrs.hypothesis == "halve the smoothing"
