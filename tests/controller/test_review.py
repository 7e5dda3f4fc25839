"""Read-side queries (controller.review.views) against a small real campaign run by the loop on the fake
trainer: what the leaderboard, status, show and diff say must equal what the study and git hold."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from controller.config import CampaignConfig, load_campaign
from controller.errors import ControllerError
from controller.review.views import Campaign, campaign_status, diff_between, leaderboard, trial_detail
from controller.store.records import rebuild_archive
from controller.store.study import CampaignStudy

pytestmark = pytest.mark.slow  # the module's fixture runs a whole campaign (or Docker)

DEFAULT_OPERATIONS = "mutate = 1.0\ntune = 0.5\nhypothesis = 0.0\nconfirm = 0.0"
REPO = Path(__file__).resolve().parents[2]
FAKE_TRAINER = REPO / "tests" / "programs" / "unigram_trainer.py"
MUTATION = {
    "reply": (
        "<hypothesis>Smooth the unigram counts more</hypothesis>\n"
        "<rationale>Rare tokens are under-estimated; more add-k mass helps them.</rationale>\n"
        '<edit path="train_gpt.py">\n<<<<<<< SEARCH\n'
        '    Knob("SMOOTHING", float, 0.5, low=0.01, high=10.0, log=True),\n=======\n'
        '    Knob("SMOOTHING", float, 0.9, low=0.01, high=10.0, log=True),  # more mass on rare tokens\n'
        ">>>>>>> REPLACE\n</edit>\n"
    )
}


def write_campaign(root: Path, data, *, max_trials: int = 4, operations: str = "") -> CampaignConfig:
    """A campaign of the fake trainer (as train_gpt.py) on the tiny shards: one scripted code change
    (replay), then knob tuning. Runs in a few seconds on CPU."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FAKE_TRAINER, root / "train_gpt.py")
    (root / "replay.jsonl").write_text(json.dumps(MUTATION) + "\n", encoding="utf-8")
    (root / "campaign.toml").write_text(
        f"""
[campaign]
name = "review"
seed_program = "train_gpt.py"
runs_dir = "runs"
[data]
dataset_dir = "{data.dataset_dir}"
tokenizer_path = "{data.tokenizer_path}"
[tiers.proxy]
device = "cpu"
train_seconds = 20
eval_seconds = 20
startup_grace_seconds = 10
seeds_to_confirm = 2
min_delta_nats = 0.0
p_value = 0.5
[search]
explore_tier = "proxy"
confirm_tier = "proxy"
preflight_smoke = false
[budget]
max_trials = {max_trials}
[agent]
proposer = "replay"
replay_file = "replay.jsonl"
[operations]
{operations or DEFAULT_OPERATIONS}
[frontier]
k = 3
[study]
n_startup_trials = 2
pruner = "none"
""",
        encoding="utf-8",
    )
    return load_campaign(root / "campaign.toml")


def run_campaign(config: CampaignConfig) -> None:
    from controller.search.loop import Controller
    from controller.search.workspace import open_workspace

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with open_workspace(config, progress=False) as ws:
        Controller(ws, say=lambda line: None).run()


def build_campaign(root: Path, data) -> CampaignConfig:
    config = write_campaign(root, data)
    run_campaign(config)
    return config


@pytest.fixture(scope="module")
def config(tmp_path_factory, tiny_data) -> CampaignConfig:
    return build_campaign(tmp_path_factory.mktemp("review"), tiny_data)


@pytest.fixture(scope="module")
def campaign(config) -> Campaign:
    return Campaign.open(config)


def git(config: CampaignConfig, *args: str) -> str:
    repo = config.run_dir / "repo"
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def branch_commit(config: CampaignConfig, trial: int) -> str:
    """The commit of a candidate's branch, on the frontier or archived."""
    refs = git(config, "for-each-ref", "--format=%(refname) %(objectname)")
    for line in refs.splitlines():
        name, commit = line.split()
        if name in (f"refs/heads/cand/{trial}", f"refs/golf/archive/cand/{trial}"):
            return commit
    raise AssertionError(f"no branch for trial {trial}")


def test_leaderboard_ranks_by_bpb_with_the_numbers_the_study_and_notes_hold(config, campaign):
    rows = leaderboard(campaign)
    trials = {t.number: t for t in CampaignStudy.from_config(config).trials()}
    scored = [t for t in trials.values() if t.state == "COMPLETE" and t.attrs.candidate is not None]
    assert len(rows) == len(scored) >= 3
    assert [r.val_bpb for r in rows] == sorted(r.val_bpb for r in rows)
    for row in rows:
        attrs = trials[row.trial].attrs
        assert row.val_bpb == pytest.approx(trials[row.trial].value)
        assert row.commit == attrs.candidate_commit == branch_commit(config, row.trial)
        note = json.loads(git(config, "notes", "--ref=refs/notes/golf", "show", row.commit))
        assert row.artifact_bytes == note["result"]["artifact"]["code"] + note["result"]["artifact"]["model"]
        assert row.eval_seconds == note["result"]["eval_seconds"]
        assert row.headroom_bytes == 16_000_000 - row.artifact_bytes
        if row.parent_trial is not None:
            assert row.delta_parent_bpb == pytest.approx(row.val_bpb - trials[row.parent_trial].value)
            assert row.delta_seed_bpb == pytest.approx(row.val_bpb - trials[0].value)


def test_leaderboard_leaves_out_ineligible_candidates_unless_asked(campaign):
    archive = rebuild_archive(campaign.trials)
    eligible = {c.trial for c in archive if c.eligible}
    assert {r.trial for r in leaderboard(campaign)} == eligible
    assert len(leaderboard(campaign, limit=2)) == 2


def test_show_holds_the_real_diff_hypothesis_and_rationale_of_the_code_change(config, campaign):
    mutated = next(t for t in campaign.trials if t.attrs.operation == "mutate")
    detail = trial_detail(campaign, mutated.number)
    assert detail.hypothesis == "Smooth the unigram counts more"
    assert "Rare tokens are under-estimated" in detail.rationale
    assert detail.diff == git(config, "diff", "--no-color", mutated.attrs.parent_commit, detail.commit)
    assert (
        '+    Knob("SMOOTHING", float, 0.9' in detail.diff
        and '-    Knob("SMOOTHING", float, 0.5' in detail.diff
    )
    assert [step[0] for step in detail.lineage] == [0, mutated.number]
    assert "eval: val_loss" in detail.log_tail


def test_diff_between_two_candidates_is_gits_diff_of_their_commits(config, campaign):
    rows = leaderboard(campaign)
    a, b = rows[0], rows[-1]
    expected = git(config, "diff", "--no-color", a.commit, b.commit)
    assert diff_between(campaign, a.trial, b.trial) == expected and expected


def test_status_counts_trials_and_names_the_best_of_record(campaign):
    state = campaign_status(campaign)
    assert sum(state.trials_by_state.values()) == len(campaign.trials)
    assert state.best_seen is not None and state.best_seen.val_bpb == min(
        r.val_bpb for r in leaderboard(campaign)
    )
    assert state.best_of_record is not None and state.best_of_record.confirmed
    assert state.running == [] and state.controller_pid is None
    assert state.trials_by_operation.get("seed") == 1


def test_unknown_trial_and_unrun_campaign_are_reported_with_a_hint(campaign, tmp_path, tiny_data):
    with pytest.raises(ControllerError, match="no trial 999"):
        trial_detail(campaign, 999)
    fresh = write_campaign(tmp_path / "fresh", tiny_data)
    with pytest.raises(ControllerError, match="has no results"):
        Campaign.open(fresh)


def test_status_names_the_controller_only_while_it_holds_the_campaign_lock(config):
    import os

    from controller.search.workspace import open_workspace

    with open_workspace(config, progress=False):
        assert campaign_status(Campaign.open(config)).controller_pid == os.getpid()
    assert campaign_status(Campaign.open(config)).controller_pid is None


def test_cli_commands_read_and_steer_the_campaign(config, campaign):
    from typer.testing import CliRunner

    from controller.cli import app

    runner = CliRunner()
    toml = str(config.campaign.seed_program.parent / "campaign.toml")
    board = runner.invoke(app, ["leaderboard", toml, "--json"])
    assert board.exit_code == 0, board.output
    assert [row["trial"] for row in json.loads(board.output)] == [r.trial for r in leaderboard(campaign)]
    mutated = next(t.number for t in campaign.trials if t.attrs.operation == "mutate")
    shown = runner.invoke(app, ["show", toml, str(mutated)])
    assert shown.exit_code == 0 and "Smooth the unigram counts more" in shown.output
    assert "more mass on rare tokens" in shown.output  # the diff's added line
    added = runner.invoke(app, ["hypothesis", "add", toml, "Count bigrams", "--parent", str(mutated)])
    assert added.exit_code == 0 and "queued h-001" in added.output
    listed = runner.invoke(app, ["hypothesis", "list", toml, "--json"])
    assert json.loads(listed.output)[0]["parent_trial"] == mutated
    wrong = runner.invoke(app, ["enqueue", toml, "--knob", "SMOOTHIN=2"])
    assert wrong.exit_code != 0 and "no such knob" in wrong.output
    missing = runner.invoke(app, ["show", toml, "999"])
    assert missing.exit_code == 2 and "no trial 999" in missing.output


def test_leaderboard_in_a_log_file_shows_whole_numbers(config, campaign):
    """Off a terminal (an overnight run's log) rich would assume 80 columns and cut bpb to "2.…"."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    toml = str(config.campaign.seed_program.parent / "campaign.toml")
    command = [sys.executable, "-m", "controller.cli", "leaderboard", toml]
    printed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    for row in leaderboard(campaign):
        assert f"{row.val_bpb:.4f}" in printed.stdout and f"{row.artifact_bytes:,}" in printed.stdout


def test_text_in_square_brackets_is_printed_as_written(config, capsys):
    """Hypotheses (an LLM's or a person's) and tier names like "[proxy]" are text, not rich markup."""
    import typer
    from typer.testing import CliRunner

    from controller.cli.review import register
    from controller.cli.terminal import say

    say("trial 3: mutate on parent 0 [proxy] Use [bold]bigrams[/bold]")
    assert "trial 3: mutate on parent 0 [proxy] Use [bold]bigrams[/bold]" in capsys.readouterr().out
    app = typer.Typer()
    register(app)
    toml = str(config.campaign.seed_program.parent / "campaign.toml")
    added = CliRunner().invoke(app, ["hypothesis", "add", toml, "Count [b]igrams[/b]"])
    assert added.exit_code == 0, added.output
    assert "Count [b]igrams[/b]" in added.output
