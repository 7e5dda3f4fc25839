"""A challenge record imported with ``autogolf seed --from``: unwrapped, given a knob table, run as
published (no run contract) on the campaign's own data, and shown as self-reported everywhere,
never a parent."""

from __future__ import annotations

import base64
import json
import lzma
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli.app import app
from controller.review.views import Campaign, campaign_status, leaderboard
from controller.search.imports import queue_record, with_knob_table
from controller.search.requests import load_requests, trials_of
from importer import load_record
from sandbox.knobs import parse_knob_table
from tests.controller.test_review import run_campaign, write_campaign

RECORD_LIKE = Path(__file__).resolve().parents[1] / "programs" / "record_like" / "train_gpt.py"
README = """# A record-like run

## Reproduce

```bash
ITERATIONS=2 VOCAB_SIZE=512 SMOOTHING=0.25 torchrun --standalone --nproc_per_node=1 train_gpt.py
```
"""


def record_folder(root: Path, *, wrapped: bool = False) -> Path:
    """A records folder as the challenge has them: program, README with its run command, submission."""
    root.mkdir(parents=True)
    source = RECORD_LIKE.read_text(encoding="utf-8")
    if wrapped:  # a self-extracting program, as seven records were shipped
        payload = base64.b85encode(lzma.compress(source.encode())).decode()
        source = f'import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("{payload}")))\n'
    (root / "train_gpt.py").write_text(source, encoding="utf-8")
    (root / "README.md").write_text(README, encoding="utf-8")
    (root / "submission.json").write_text(json.dumps({"val_bpb": 2.5, "val_loss": 5.2}), encoding="utf-8")
    return root


def test_the_injected_knob_table_carries_the_published_settings_and_leaves_the_program_runnable(tmp_path):
    record = load_record(record_folder(tmp_path / "rec", wrapped=True))
    source, added = with_knob_table(record)
    assert added and "exec(" not in source and "class Hyperparameters" in source
    knobs = {k.name: k for k in parse_knob_table(source)}
    assert knobs["SMOOTHING"].default == 0.25 and knobs["ITERATIONS"].default == 2  # from the README
    assert knobs["MAX_WALLCLOCK_SECONDS"].default == 600.0  # the script's own default
    compile(source, "train_gpt.py", "exec")  # the table is ordinary code, ahead of the program


@pytest.mark.slow
def test_an_imported_record_runs_as_published_and_is_shown_but_never_a_parent(tmp_path, tiny_data):
    config = write_campaign(tmp_path / "camp", tiny_data, max_trials=4)
    folder = record_folder(tmp_path / "record", wrapped=True)
    said = CliRunner().invoke(app, ["seed", str(tmp_path / "camp" / "campaign.toml"), "--from", str(folder)])
    assert said.exit_code == 0, said.output
    assert "self-extracting" in said.output and "runs as published" in said.output
    assert "published 2.5000 bpb" in said.output
    (request,) = load_requests(config.run_dir)
    assert request.published and request.reported_bpb == 2.5 and not request.needs_cuda

    run_campaign(config)
    campaign = Campaign.open(config)
    (made,) = trials_of(request.id, campaign.trials)
    assert made.state == "COMPLETE", made.attrs.status_reason
    imported = campaign.archive.get(made.number)
    assert imported.self_reported and not imported.eligible and not imported.confirmed
    # Never a parent: no trial descends from it, and it is not on the frontier.
    assert all(t.attrs.parent_trial != made.number for t in campaign.trials)
    assert campaign.store.commit_of(made.number) not in campaign.store.frontier()
    # Shown: in the leaderboard (after the harness-scored ones), status and the trial's detail.
    rows = leaderboard(campaign)
    assert [r.trial for r in rows if r.self_reported] == [made.number] and rows[-1].self_reported
    assert campaign_status(campaign).best_self_reported.trial == made.number
    shown = CliRunner().invoke(app, ["show", str(tmp_path / "camp" / "campaign.toml"), str(made.number)])
    assert "self-reported" in shown.output
    # Its score is its own final log line, on the campaign's data.
    log = (config.run_dir / "trials" / str(made.number) / "run" / "run.log").read_text()
    assert f"val_bpb:{imported.val_bpb:.8f}" in log
    export = CliRunner().invoke(
        app,
        ["export", str(tmp_path / "camp" / "campaign.toml"), str(made.number), "--to", str(tmp_path / "out")],
    )
    assert export.exit_code == 2 and "ran as published" in export.output.replace("\n", " ")


@pytest.mark.slow
def test_a_record_that_needs_cuda_is_recorded_as_not_run_on_a_cpu_tier(tmp_path, tiny_data):
    config = write_campaign(tmp_path / "camp", tiny_data, max_trials=3)
    folder = record_folder(tmp_path / "record")
    program = folder / "train_gpt.py"
    program.write_text(
        program.read_text().replace(
            "def main():\n",
            "def main():\n    import torch\n    if not torch.cuda.is_available():\n"
            '        raise RuntimeError("CUDA is required")\n',
        )
    )
    queued = queue_record(config.run_dir, folder)
    assert any(r.name == "cuda" for r in queued.missing)
    run_campaign(config)
    (made,) = trials_of(queued.request_id, Campaign.open(config).trials)
    assert made.state == "FAIL" and "needs CUDA" in made.attrs.status_reason


def test_a_folder_without_a_program_changes_nothing(tmp_path, tiny_data):
    write_campaign(tmp_path / "camp", tiny_data)
    empty = tmp_path / "empty"
    empty.mkdir()
    said = CliRunner().invoke(app, ["seed", str(tmp_path / "camp" / "campaign.toml"), "--from", str(empty)])
    assert said.exit_code == 2 and "no program" in said.output.replace("\n", " "), said.output
    assert not list(tmp_path.glob("**/requests.jsonl")) and not list(tmp_path.glob("**/seeds/*"))


RECORDS = Path(__file__).resolve().parents[3] / "shared" / "records"


def test_what_the_trainer_image_needs_for_the_caseops_record_and_how_to_build_it():
    folder = next(iter(sorted(RECORDS.glob("2026-04-19_*"))), None)
    if folder is None:
        pytest.skip(f"the shared records are not at {RECORDS}")
    from controller.search.imports import image_needs
    from sandbox.backends.images import WHEELS_DIR, trainer_build_command

    needs = image_needs(load_record(folder))
    assert needs.wheels == ("flash_attn_interface",) and "python-minifier" in needs.pip
    assert not needs.tools  # nvidia-smi comes from the host's NVIDIA toolkit, not the image
    command = trainer_build_command(pip_extra=needs.pip, system_tools=("lrzip",))
    assert "PIP_EXTRA=python-minifier" in command and "SYSTEM_TOOLS=lrzip" in command
    dockerfile = Path(command[command.index("-f") + 1]).read_text()
    assert "COPY ${WHEELS}/ /tmp/wheels/" in dockerfile and WHEELS_DIR.is_dir()
    assert not image_needs(load_record(RECORDS / "2026-03-17_NaiveBaseline"))


@pytest.mark.slow
def test_the_modules_a_record_imports_from_its_folder_travel_with_it_and_count_as_code(tmp_path, tiny_data):
    config = write_campaign(tmp_path / "camp", tiny_data, max_trials=2)
    folder = record_folder(tmp_path / "record")
    program = folder / "train_gpt.py"
    program.write_text(
        program.read_text().replace(
            "    total = sum(counts)", "    import helpers\n\n    total = helpers.floor(0) + sum(counts)"
        )
    )
    (folder / "helpers.py").write_text("def floor(x):\n    return max(x, 0)\n", encoding="utf-8")
    (folder / "unused.py").write_text("raise SystemExit('never imported')\n", encoding="utf-8")
    queued = queue_record(config.run_dir, folder)
    (request,) = load_requests(config.run_dir)
    assert queued.record.siblings == {"helpers.py": "def floor(x):\n    return max(x, 0)\n"}
    assert request.extra_files == ("helpers.py",)
    run_campaign(config)
    campaign = Campaign.open(config)
    (made,) = trials_of(request.id, campaign.trials)
    assert made.state == "COMPLETE", made.attrs.status_reason
    files = campaign.store.files_at(campaign.archive.get(made.number).commit)
    assert "helpers.py" in files and "unused.py" not in files
    note = json.loads(campaign.store.read_note(campaign.archive.get(made.number).commit))
    code = note["result"]["artifact"]["code"]
    assert code == len(files["train_gpt.py"].encode()) + len(files["helpers.py"].encode())
