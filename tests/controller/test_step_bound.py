"""Fair comparisons: a cpu tier trains exactly its planned steps whatever the program's own
wall-clock cap says, and a run cut short of its plan is recorded and shown as cut (not comparable)."""

from __future__ import annotations

import json
import re
import subprocess

import optuna
import pytest
from typer.testing import CliRunner

from controller.cli.app import app
from controller.config import TierConfig, load_campaign
from controller.review.report import render_report
from controller.review.steps import StepCount
from controller.review.views import Campaign, leaderboard, trial_detail
from controller.search.trial import knob_overrides, planned_steps
from sandbox.knobs import Knob
from sandbox.spec import StepExtent
from tests.controller.campaigns import REPO_ROOT, knob_line

CLOCKED_TRAINER = REPO_ROOT / "tests" / "programs" / "clocked_trainer.py"
CAPS = [
    Knob(name="ITERATIONS", type="int", default=20000),
    Knob(name="MAX_WALLCLOCK_SECONDS", type="float", default=600.0),
]


def tier(**fields) -> TierConfig:
    return TierConfig(train_seconds=10, eval_seconds=10, **fields)


def test_cpu_tiers_are_bound_by_steps_and_gpu_tiers_by_the_wall_clock_unless_told():
    assert tier(device="cpu").step_bound and not tier(device="gpu").step_bound
    assert not tier(device="cpu", train_bound="wallclock").step_bound
    assert tier(device="gpu", train_bound="steps").step_bound


def test_a_step_bound_tier_turns_the_programs_wall_clock_cap_off():
    env = knob_overrides(tier(device="cpu", knobs={"ITERATIONS": 80}), "proxy", CAPS)
    assert env == {"ITERATIONS": "80", "MAX_WALLCLOCK_SECONDS": "0"}
    gpu = knob_overrides(tier(device="gpu", knobs={"MAX_WALLCLOCK_SECONDS": 300.0}), "proxy", CAPS)
    assert gpu == {"MAX_WALLCLOCK_SECONDS": "300.0"}  # the challenge's rule: the cap ends training
    # Without a step cap to stop it, turning the clock off could let a program run until it is killed.
    assert knob_overrides(tier(device="cpu"), "proxy", CAPS[1:]) == {}


def test_a_wall_clock_cap_on_a_step_bound_tier_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"MAX_WALLCLOCK_SECONDS = 35.0 .*bound by steps.*train_bound"):
        tier(device="cpu", knobs={"MAX_WALLCLOCK_SECONDS": 35.0})
    assert tier(device="cpu", knobs={"MAX_WALLCLOCK_SECONDS": 0}).step_bound
    assert not tier(device="cpu", train_bound="wallclock", knobs={"MAX_WALLCLOCK_SECONDS": 35.0}).step_bound


def test_the_shipped_campaigns_bound_cpu_tiers_by_steps_and_gpu_tiers_by_the_clock():
    for name in ("demo", "h100x1_proxy", "h100x8_record"):
        config = load_campaign(REPO_ROOT / "experiments" / f"{name}.toml", check_paths=False)
        for tier_name, t in config.tiers.defined().items():
            assert t.step_bound == (t.device == "cpu"), (name, tier_name)


def test_planned_steps_are_the_runs_iterations():
    assert planned_steps({"ITERATIONS": 80, "MATRIX_LR": 0.04}) == 80
    assert planned_steps({"MATRIX_LR": 0.04}) is None
    assert planned_steps({"ITERATIONS": True}) is None


def test_step_labels_mark_runs_that_are_not_comparable():
    assert StepCount(reached=80, planned=80, extent=StepExtent.PLANNED).label == "80/80"
    cut = StepCount(reached=52, planned=80, extent=StepExtent.CUT)
    assert cut.label == "52/80 cut" and not cut.comparable and "not comparable" in cut.explain()
    assert StepCount(reached=90, planned=80, extent=StepExtent.OVER).label == "90/80 over"
    assert StepCount(reached=52).label == "52" and StepCount().label == ""
    old = StepCount.of_result({"status": "ok", "steps": 52})  # a note from before steps were planned
    assert old.label == "52" and old.comparable


# ---------------------------------------------------------------------- whole campaigns


def run_seed_campaign(make_campaign, run_campaign, *, name: str, proxy: dict) -> tuple[Campaign, str]:
    """The clocked trainer (6 steps planned, its own 0.25 s cap at 0.1 s a step) as the seed, plus
    one knob trial, on a cpu proxy tier."""
    toml = make_campaign(
        name=name,
        seed_program=CLOCKED_TRAINER,
        proxy=proxy,
        proxy_knobs={"ITERATIONS": 6},
        replay=[knob_line("smoother counts", SMOOTHING=0.9)],
        max_trials=2,
        preflight_smoke=False,
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_campaign(toml)
    return Campaign.open(load_campaign(toml)), str(toml)


@pytest.mark.slow
def test_a_cpu_tier_run_trains_exactly_its_planned_steps_whatever_its_clock_cap(make_campaign, run_campaign):
    campaign, _ = run_seed_campaign(make_campaign, run_campaign, name="steps", proxy={})
    rows = leaderboard(campaign)
    assert len(rows) == 2
    for row in rows:
        candidate = campaign.archive.get(row.trial)
        assert (candidate.steps, candidate.steps_planned) == (6, 6)  # its 0.25 s cap would stop it at 3
        assert candidate.step_extent is StepExtent.PLANNED
        assert row.steps.label == "6/6" and row.steps.step_bound
        result = campaign.note(candidate)["result"]
        assert result["step_bound"] and not any("planned steps" in n for n in result["notes"])
    # Same steps, same schedule: the seed's program scores the same on every run.
    seed_note = campaign.note(campaign.archive.get(0))["result"]
    assert [p["step"] for p in seed_note["curve"]] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_a_run_cut_by_its_wall_clock_cap_is_recorded_and_shown_as_cut(make_campaign, run_campaign):
    campaign, toml = run_seed_campaign(
        make_campaign, run_campaign, name="clock", proxy={"train_bound": "wallclock"}
    )
    seed = campaign.archive.get(0)
    assert seed.steps is not None and seed.steps < 6 and seed.steps_planned == 6
    assert seed.step_extent is StepExtent.CUT
    label = f"{seed.steps}/6 cut"

    (row,) = [r for r in leaderboard(campaign) if r.trial == 0]
    assert row.steps.label == label and not row.steps.comparable
    detail = trial_detail(campaign, 0)
    assert detail.steps.label == label and "cut short" in detail.steps.explain()

    shown = CliRunner().invoke(app, ["leaderboard", toml], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    assert label in shown.output and "not comparable" in shown.output
    as_json = json.loads(CliRunner().invoke(app, ["leaderboard", toml, "--json"]).output)
    assert {r["trial"]: r["steps"]["extent"] for r in as_json}[0] == "cut"
    show = CliRunner().invoke(app, ["show", toml, "0"], env={"COLUMNS": "250"})
    assert "not comparable with runs that trained all of them" in show.output

    page = render_report(campaign)
    assert re.search(rf"<td class='cut' title='not comparable: [^']*'>{re.escape(label)}</td>", page)
    assert "not comparable with runs that trained their plan" in page

    message = subprocess.run(
        ["git", "-C", str(campaign.run_dir / "repo"), "log", "-1", "--format=%B", seed.commit],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"Golf-Steps: {label}" in message
