"""Export (controller.review.export): a records folder from a candidate of a real small campaign."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace

import pytest

from controller.errors import ControllerError
from controller.review.export import SubmissionInfo, export_candidate
from controller.review.views import Campaign, leaderboard
from tests.controller.test_review import build_campaign

pytestmark = pytest.mark.slow  # the module's fixture runs a whole campaign (or Docker)

FIELDS = {
    "author", "github_id", "name", "blurb", "date", "val_loss", "val_bpb", "bytes_total", "bytes_code",
    "seeds", "seed_results", "val_bpb_std", "p_value", "hardware", "pytorch_version", "base_pr",
}  # fmt: skip


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, tiny_data) -> Campaign:
    return Campaign.open(build_campaign(tmp_path_factory.mktemp("export"), tiny_data))


def mutated_trial(campaign: Campaign) -> int:
    return next(t.number for t in campaign.trials if t.attrs.operation == "mutate")


def test_export_writes_a_records_folder_whose_program_is_the_candidates_bytes(campaign, tmp_path):
    number = mutated_trial(campaign)
    info = SubmissionInfo(author="Ada", github_id="ada", hardware="CPU (test)", date="2026-04-01")
    submission = export_candidate(campaign, number, tmp_path / "rec", info)
    folder = tmp_path / "rec"
    commit = campaign.archive.get(number).commit
    committed = subprocess.run(
        ["git", "-C", str(campaign.run_dir / "repo"), "show", f"{commit}:train_gpt.py"],
        capture_output=True,
        check=True,
    ).stdout
    assert (folder / "train_gpt.py").read_bytes() == committed
    data = json.loads((folder / "submission.json").read_text())
    assert set(data) == FIELDS
    record = campaign.record(number)
    assert data["val_bpb"] == pytest.approx(record.value) and data["val_loss"] == record.attrs.val_loss
    assert data["bytes_code"] == len(committed)
    assert data["bytes_total"] == campaign.archive.get(number).artifact_bytes
    assert data["seeds"] == [record.attrs.seed] and len(data["seed_results"]) == 1
    assert data["val_bpb_std"] is None and data["p_value"] is None  # one seed: nothing to test
    assert (data["author"], data["hardware"], data["date"], data["base_pr"]) == (
        "Ada",
        "CPU (test)",
        "2026-04-01",
        None,
    )
    log_name = data["seed_results"][0]["log"]
    assert "eval: val_loss" in (folder / log_name).read_text()
    readme = (folder / "README.md").read_text()
    assert "Smooth the unigram counts more" in readme and "Rare tokens are under-estimated" in readme
    assert "### Trial 0 (seed)" in readme and f"{submission.val_bpb:.4f}" in readme


def test_export_refuses_a_folder_that_holds_files(campaign, tmp_path):
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "keep.txt").write_text("mine")
    best = leaderboard(campaign)[0].trial
    with pytest.raises(ControllerError, match="not an empty folder"):
        export_candidate(campaign, best, tmp_path / "rec", SubmissionInfo())
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["keep.txt"]


def test_p_value_compares_per_seed_losses_with_the_parents(campaign):
    from controller.review.export import p_value_vs_parent
    from controller.store.archive import Archive

    base = campaign.archive.get(mutated_trial(campaign))
    parent = campaign.archive.get(base.parent_trial)
    three_seeds = replace(
        parent, val_bpb=None, seed_bpbs=(1.0, 1.01, 0.99), seed_val_losses=(2.0, 2.02, 1.98)
    )
    fake = Archive([three_seeds])
    view = Campaign(campaign.config, campaign.run_dir, campaign.store, campaign.trials, fake)
    better = p_value_vs_parent(view, base, [1.90, 1.91, 1.89])
    worse = p_value_vs_parent(view, base, [2.05, 2.06, 2.04])
    assert better is not None and better < 0.01 and worse is not None and worse > 0.5
    assert p_value_vs_parent(view, base, [1.9]) is None


def test_a_self_extracting_export_ships_fewer_code_bytes_and_runs_to_the_same_score(campaign, tmp_path):
    number = mutated_trial(campaign)
    submission = export_candidate(campaign, number, tmp_path / "rec", SubmissionInfo(), self_extracting=True)
    folder = tmp_path / "rec"
    shipped, readable = (folder / "train_gpt.py").read_text(), (folder / "train_gpt_readable.py").read_text()
    assert "exec(" in shipped and "KNOBS" not in shipped and "KNOBS" in readable
    assert submission.bytes_code == len(shipped.encode()) < len(readable.encode())
    measured = campaign.archive.get(number).artifact_bytes
    assert submission.bytes_total == measured - len(readable.encode()) + len(shipped.encode())
    # The shipped form is the program: run as a script it trains and scores like the readable one.
    # (export ran both through the sandbox before writing; here the folder's own copy is unwrapped.)
    from importer import unwrap_text

    assert unwrap_text(shipped).source == readable


def test_a_wrapper_that_does_not_unwrap_to_the_source_is_refused():
    from controller.review.wrap import check_wrapped
    from sandbox.code_bytes import self_extracting

    with pytest.raises(ControllerError, match="other source"):
        check_wrapped("print(1)\n", self_extracting("print(2)\n"))


def test_the_run_check_refuses_a_wrapper_that_scores_otherwise(campaign):
    from controller.review.wrap import run_both
    from sandbox.code_bytes import self_extracting

    entry = campaign.config.campaign.seed_program.name
    source = campaign.store.files_at(campaign.archive.get(mutated_trial(campaign)).commit)[entry]
    other = source.replace("0.9, low=0.01", "3.0, low=0.01")  # another smoothing: another score
    assert other != source
    with pytest.raises(ControllerError, match="the wrapped program scored"):
        run_both(campaign.config, source, self_extracting(other), entry)
    same = run_both(campaign.config, source, self_extracting(source), entry)
    assert same.readable_bpb == same.wrapped_bpb
