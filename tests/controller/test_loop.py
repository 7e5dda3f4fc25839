"""The search loop end to end on the unigram trainer: git store, notes, study and leaderboard agree;
replayed code edits go through preflight and the sandbox; budgets stop the campaign."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from typer.testing import CliRunner

from controller.cli.app import app
from controller.config import load_campaign
from controller.store.archive import Operation
from controller.store.gitstore import GitStore
from controller.store.records import rebuild_archive
from controller.store.study import CampaignStudy
from tests.controller.campaigns import edit_line, knob_line

ARTIFACT_LINE = 'ARTIFACT_NAME = "unigram_counts.zlib"'
RENAMED_ARTIFACT_LINE = 'ARTIFACT_NAME = "renamed_counts.zlib"'


def open_results(toml):
    config = load_campaign(toml)
    return config, CampaignStudy.from_config(config), GitStore(config.run_dir / "repo")


@pytest.mark.slow
def test_campaign_records_every_trial_in_git_notes_study_and_leaderboard(make_campaign, run_campaign):
    toml = make_campaign(
        replay=[
            knob_line("much smoother counts", SMOOTHING=8.0),
            knob_line("sharper counts", SMOOTHING=0.02),
            knob_line("a little smoother", SMOOTHING=1.0),
        ],
        max_trials=4,
    )
    why, said = run_campaign(toml)

    assert "trial budget reached (4 of 4)" in why
    config, study, store = open_results(toml)
    trials = study.trials()
    assert [t.state for t in trials] == ["COMPLETE"] * 4, [t.attrs.status_reason for t in trials]
    recorded = store.recorded_trials()
    assert sorted(recorded) == [0, 1, 2, 3]
    for record in trials:
        commit = recorded[record.number]
        assert record.attrs.candidate_commit == commit
        note = json.loads(store.read_note(commit))
        assert note["result"]["val_bpb"] == record.value
        assert note["trial"] == record.number
        trailers = store.read_trailers(commit)
        assert trailers["Golf-Trial"] == str(record.number)
        assert trailers["Golf-BPB"] == f"{record.value:.6f}"
        assert trailers["Golf-Parent"] == ("none" if record.number == 0 else "0")
        assert trailers["Golf-Status"] == "ok"
    # The knob-only proposals are baked into the committed program's knob table.
    assert "8.0" in store.diff(recorded[0], recorded[1])

    archive = rebuild_archive(trials)
    best = archive.best("proxy")
    assert best is not None and best.val_bpb == min(t.value for t in trials)
    frontier = store.frontier()
    assert frontier[0] == recorded[best.trial]
    # Every candidate is either on the frontier (cand/*) or archived (refs/golf/archive/), never lost.
    refs = subprocess.run(
        ["git", "-C", str(store.path), "for-each-ref", "--format=%(refname)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for number in recorded:
        assert (f"refs/heads/cand/{number}" in refs) != (f"refs/golf/archive/cand/{number}" in refs)
    assert sum(r.startswith("refs/heads/cand/") for r in refs) == len(frontier) == 3

    result = CliRunner().invoke(app, ["leaderboard", str(toml), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["trial"] for r in rows] == [t.number for t in sorted(trials, key=lambda t: t.value)]
    assert [r["val_bpb"] for r in rows] == sorted(t.value for t in trials)
    assert rows[0]["commit"] == frontier[0]


@pytest.mark.slow
def test_a_pruned_trial_says_at_which_step_its_loss_fell_behind(make_campaign, run_campaign):
    # Heavy smoothing fits the counts worse at every step than the seed's did: the median rule stops it.
    # Each step sleeps 0.5 s, so the loss is reported while the run is still going.
    toml = make_campaign(
        replay=[knob_line("far too smooth", SMOOTHING=10.0)],
        max_trials=2,
        pruner="median",
        proxy_knobs={"SLEEP_SECONDS": 2.0},
    )
    _, said = run_campaign(toml)

    _, study, _ = open_results(toml)
    seed, smooth = study.trials()
    assert (seed.state, smooth.state) == ("COMPLETE", "PRUNED"), smooth.attrs.status_reason
    reason = smooth.attrs.status_reason
    step = int(reason.removeprefix("at step ").split(":")[0])
    assert step in smooth.intermediate_values
    assert f"train loss {smooth.intermediate_values[step]:.4f}" in reason and "median" in reason
    assert any(line.startswith(f"trial 1: pruned {reason}") for line in said), said


@pytest.mark.slow
def test_replayed_code_edit_passes_preflight_and_its_commit_carries_the_edit(make_campaign, run_campaign):
    toml = make_campaign(
        replay=[edit_line("rename the artifact", ARTIFACT_LINE, RENAMED_ARTIFACT_LINE)], max_trials=2
    )
    run_campaign(toml)

    config, study, store = open_results(toml)
    edited = study.trial(1)
    assert edited.state == "COMPLETE", edited.attrs.status_reason
    assert edited.attrs.hypothesis == "rename the artifact"
    diff = store.diff(store.commit_of(0), store.commit_of(1))
    assert f"+{RENAMED_ARTIFACT_LINE}" in diff and f"-{ARTIFACT_LINE}" in diff
    # The sandbox ran the edited program: its artifact has the new name.
    run_dir = config.run_dir / "trials" / "1" / "run"
    assert list(run_dir.rglob("renamed_counts.zlib")), sorted(p.name for p in run_dir.rglob("*"))
    assert "renamed_counts.zlib" in store.files_at(store.commit_of(1))["unigram_trainer.py"]


def test_edit_that_does_not_apply_is_a_failed_trial_with_no_commit(make_campaign, run_campaign):
    toml = make_campaign(
        replay=[edit_line("edit a line that is not there", "THIS LINE IS NOT IN THE PROGRAM", "x = 1")],
        max_trials=2,
    )
    run_campaign(toml)

    _, study, store = open_results(toml)
    failed = study.trial(1)
    assert failed.state == "FAIL"
    assert failed.attrs.status_reason.startswith("gave up")
    assert "SEARCH" in failed.attrs.status_reason or "match" in failed.attrs.status_reason
    assert store.commit_of(1) is None
    assert sorted(store.recorded_trials()) == [0]


@pytest.mark.slow
def test_edit_that_crashes_at_run_time_is_stopped_by_the_preflight_smoke_run(make_campaign, run_campaign):
    crash = "def train(cfg: dict) -> dict:\n    raise RuntimeError('boom from the candidate')"
    toml = make_campaign(
        replay=[edit_line("crash in training", "def train(cfg: dict) -> dict:", crash)], max_trials=2
    )
    run_campaign(toml)

    config, study, store = open_results(toml)
    failed = study.trial(1)
    assert failed.state == "FAIL"
    reason = failed.attrs.status_reason
    assert reason.startswith("gave up") and "preflight" in reason, reason
    assert store.commit_of(1) is None
    # The crash was caught by the smoke run, before the sandbox ran the explore tier.
    assert not (config.run_dir / "trials" / "1" / "run").exists()


@pytest.mark.slow
def test_trial_budget_is_respected_exactly_with_two_slots(make_campaign, run_campaign):
    toml = make_campaign(
        replay=[knob_line(f"smoothing {s}", SMOOTHING=s) for s in (0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8)],
        max_trials=5,
        cpu_slots=2,
        proxy_knobs={"SLEEP_SECONDS": 0.3},
    )
    why, _ = run_campaign(toml)

    _, study, _ = open_results(toml)
    assert "trial budget reached" in why
    assert len(study.trials()) == 5
    assert all(t.state == "COMPLETE" for t in study.trials())


@pytest.mark.slow
def test_wall_clock_budget_stops_the_campaign_early(make_campaign, run_campaign):
    toml = make_campaign(
        replay=[knob_line(f"smoothing {s}", SMOOTHING=s) for s in (0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8)],
        max_trials=None,
        max_wall_hours=2.0 / 3600,  # two seconds; each run sleeps one
        proxy_knobs={"SLEEP_SECONDS": 1.0},
    )
    started = time.monotonic()
    why, _ = run_campaign(toml)
    elapsed = time.monotonic() - started

    _, study, _ = open_results(toml)
    assert why.startswith("wall-clock budget reached"), why
    assert 1 <= len(study.trials()) < 8
    assert all(t.state in ("COMPLETE", "FAIL") for t in study.trials())  # nothing left RUNNING
    assert elapsed < 20


@pytest.mark.slow
def test_demo_campaign_finishes_and_prints_a_leaderboard(tmp_path, monkeypatch):
    """The real baseline on CPU, as `autogolf demo` runs it (a few minutes)."""
    import shutil
    import sys

    from controller.cli.app import DEMO_CAMPAIGN

    demo_dir = tmp_path / "experiments"
    shutil.copytree(DEMO_CAMPAIGN.parent, demo_dir)
    toml = demo_dir / "demo.toml"
    text = toml.read_text().replace('runs_dir = "../runs"', f'runs_dir = "{tmp_path / "runs"}"')
    text = text.replace('seed_program = "../baseline/train_gpt.py"', 'seed_program = "baseline/train_gpt.py"')
    toml.write_text(text)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "controller.cli", "run", str(toml)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**__import__("os").environ, "COLUMNS": "200"},
    )
    elapsed = time.monotonic() - started
    print(f"demo campaign: {elapsed:.0f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "campaign stopped" in done.stdout and "leaderboard" in done.stdout
    config, study, store = open_results(toml)
    scored = [t for t in study.trials() if t.state == "COMPLETE"]
    assert len(scored) >= 2 and store.frontier()
    # Its replay file yields confirmed wins in two lineages: at least one stack and one ablation run,
    # and show, the leaderboard and the report say so.
    stacks = [t for t in scored if t.attrs.operation is Operation.STACK]
    ablations = [t for t in scored if t.attrs.operation is Operation.ABLATE]
    assert stacks and ablations, [(t.number, t.attrs.operation, t.state) for t in study.trials()]
    assert "[stack " in done.stdout and "[ablation of " in done.stdout
    stack = stacks[0]
    assert stack.attrs.second_parent is not None
    parents = subprocess.run(
        [
            "git",
            "-C",
            str(config.run_dir / "repo"),
            "rev-list",
            "--parents",
            "-n",
            "1",
            stack.attrs.candidate_commit,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(parents) == 3  # the commit and its two parents
    shown = CliRunner().invoke(app, ["show", str(toml), str(stack.number)])
    assert f"+ {stack.attrs.second_parent}" in shown.output, shown.output
    report = tmp_path / "report.html"
    made = CliRunner().invoke(app, ["report", str(toml), "--out", str(report)])
    assert made.exit_code == 0, made.output
    html = report.read_text(encoding="utf-8")
    assert "Stacks and ablations" in html and f">{stack.number}<" in html
