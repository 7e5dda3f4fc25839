"""load_record joins the steps into one ImportedRecord; bad input is one clear error; nothing is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from importer import RecordImportError, SettingSource, Wrapping, load_record
from tests.importer.programs import OFFICIAL, OFFICIAL_LOG, README, SUBMISSION, lzma_b85_wrapper

FULL = {
    "train_gpt.py": OFFICIAL,
    "README.md": README,
    "train_seed42.log": OFFICIAL_LOG,
    "submission.json": SUBMISSION,
}


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_record_folder_imports_with_published_values_as_knob_defaults(write_record):
    folder = write_record("2026-01-01_Toy", FULL)
    before = _snapshot(folder.parent)
    record = load_record(folder)
    assert _snapshot(folder.parent) == before  # nothing written, not even a __pycache__
    assert (record.name, record.wrapping, record.program, record.source) == (
        "Toy record",
        Wrapping.PLAIN,
        folder / "train_gpt.py",
        OFFICIAL,
    )
    defaults = {k.name: k.default for k in record.knobs}
    assert defaults["MATRIX_LR"] == 0.03  # the README and the log, not the program's 0.04
    assert (
        defaults["SEED"] == 1337 and defaults["DATA_PATH"] == "./data/datasets/fineweb10B_sp1024"
    )  # per-run, paths: kept
    assert (record.score.val_bpb, record.score.source) == (1.4812, SettingSource.SUBMISSION)
    assert {"cuda", "flash_attn_interface"} <= {r.name for r in record.requirements}


def test_score_comes_from_the_log_without_submission_json(write_record):
    folder = write_record(files={"train_gpt.py": OFFICIAL, "train.log": OFFICIAL_LOG})
    record = load_record(folder)
    assert (record.score.val_bpb, record.score.val_loss, record.score.file) == (1.48, 2.5, "train.log")
    assert record.name == "record"


def test_single_program_file_takes_its_own_defaults(write_record):
    folder = write_record(files=FULL)
    record = load_record(folder / "train_gpt.py")
    assert {k.name: k.default for k in record.knobs}["MATRIX_LR"] == 0.04
    assert (record.settings.values, record.score, record.name) == ((), None, "train_gpt")


def test_wrapped_program_is_imported_through_its_wrapper(write_record):
    folder = write_record(files={"train_gpt.py": lzma_b85_wrapper(OFFICIAL), "submission.json": SUBMISSION})
    record = load_record(folder)
    assert (record.wrapping, record.source, record.layers[0].codec) == (
        Wrapping.SELF_EXTRACTING,
        OFFICIAL,
        "lzma",
    )


def test_stub_record_names_the_file_its_source_is_from(write_record):
    folder = write_record(
        files={"train_gpt.py": 'exec(open("train_gpt_human.py").read())\n', "train_gpt_human.py": OFFICIAL}
    )
    record = load_record(str(folder))
    assert record.wrapping is Wrapping.EXEC_STUB and record.source_path.name == "train_gpt_human.py"


def test_a_lone_train_script_with_another_name_is_the_program(write_record):
    folder = write_record(files={"train_small.py": OFFICIAL})
    assert load_record(folder).program.name == "train_small.py"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"README.md": "no program here"}, "finds no program"),
        ({"train_a.py": OFFICIAL, "train_b.py": OFFICIAL}, "several programs could be it"),
        (
            {"train_gpt.py": 'import lzma,base64\nexec(lzma.decompress(base64.b85decode("0000")))\n'},
            "does not decode",
        ),
        ({"train_gpt.py": 'exec(open("../outside.py").read())\n'}, "outside the record folder"),
        ({"train_gpt.py": 'exec(open("missing.py").read())\n'}, "missing.py, which does not exist"),
        ({"train_gpt.py": "print('no settings')\n"}, "finds no settings"),
        ({"train_gpt.py": OFFICIAL, "submission.json": "{not json"}, "cannot be read as JSON"),
        (
            {"train_gpt.py": OFFICIAL, "README.md": "```bash\nNUM_LAYERS=nine torchrun train_gpt.py\n```\n"},
            "contradict the program:\n  README.md:2 gives NUM_LAYERS='nine'",
        ),
        (
            {
                "train_gpt.py": OFFICIAL,
                "README.md": README,
                "train.log": OFFICIAL_LOG.replace("num_layers: 9", "num_layers: 12"),
            },
            "NUM_LAYERS: README.md:7 sets 9, but train.log:5 ran 12",
        ),
    ],
)
def test_bad_input_is_one_clear_error(write_record, tmp_path, files, message):
    (tmp_path / "outside.py").write_text(OFFICIAL)
    folder = write_record(files=files)
    with pytest.raises(RecordImportError, match=message.replace("(", r"\(").replace("[", r"\[")) as caught:
        load_record(folder)
    assert caught.value.hint


def test_paths_that_are_not_records_are_refused(tmp_path):
    with pytest.raises(RecordImportError, match="does not exist"):
        load_record(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(RecordImportError, match="neither a record folder nor a .py program"):
        load_record(tmp_path / "notes.txt")


def test_importing_never_runs_the_program(write_record, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    trap = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n" + OFFICIAL
    folder = write_record(files={"train_gpt.py": lzma_b85_wrapper(trap)})
    monkeypatch.chdir(tmp_path)
    load_record(folder)
    assert not marker.exists() and not os.path.exists("ran")
