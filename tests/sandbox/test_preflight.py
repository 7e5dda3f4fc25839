"""preflight: each stage stops the candidates it should, and a sound candidate passes in seconds."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest

from datatools.shards import load_split, read_shard, write_shard
from sandbox import DataPaths, HarnessError, Limits, PreflightStage, preflight
from sandbox.preflight import cut_at_document_start
from tests.sandbox.conftest import UNIGRAM_TRAINER, make_program

SMOKE_KNOBS = {"SMOOTHING": "1.0"}


@pytest.fixture
def data(tiny_data) -> DataPaths:
    return DataPaths(dataset_dir=tiny_data.dataset_dir, tokenizer_path=tiny_data.tokenizer_path)


@pytest.fixture
def program(tmp_path):
    return make_program(tmp_path / "program")


def edit(program, old: str, new: str) -> str:
    path = program / "train_gpt.py"
    source = path.read_text()
    assert old in source, f"test setup: {old!r} not in the program"
    path.write_text(source.replace(old, new, 1))
    return path.read_text()


def test_sound_candidate_passes_every_stage(program, data):
    parent = UNIGRAM_TRAINER.read_text()
    edit(
        program,
        "total = sum(counts) + smoothing * len(counts)",
        "total = smoothing * len(counts) + sum(counts)",
    )
    report = preflight(program, data=data, smoke_knobs=SMOKE_KNOBS, parent_source=parent)
    assert report.ok and report.stage is PreflightStage.PASSED, (report.reason, report.log_excerpt)
    assert [k.name for k in report.knobs][:3] == ["SMOOTHING", "SLEEP_SECONDS", "VOCAB_SIZE"]
    assert report.code_bytes == (program / "train_gpt.py").stat().st_size
    assert 0 < report.seconds < 30


def test_syntax_error_is_caught_with_its_line(program, data):
    edit(program, "def out_dir() -> str:", "def out_dir( -> str:")
    report = preflight(program, data=data, smoke_knobs=SMOKE_KNOBS)
    assert not report.ok and report.stage is PreflightStage.SYNTAX
    assert report.reason.startswith("train_gpt.py:")


def test_broken_knob_table_is_caught(program, data):
    edit(program, 'Knob("VOCAB_SIZE", int, 512)', 'Knob("VOCAB_SIZE", int, 256 * 2)')
    report = preflight(program, data=data, smoke_knobs=SMOKE_KNOBS)
    assert report.stage is PreflightStage.KNOBS
    assert "VOCAB_SIZE" in report.reason and "literal" in report.reason


def test_script_over_the_byte_budget_is_caught(program, data):
    report = preflight(program, data=data, smoke_knobs=SMOKE_KNOBS, limits=Limits(artifact_bytes=1000))
    assert report.stage is PreflightStage.CODE_BYTES
    assert "over the 1,000-byte artifact limit" in report.reason
    assert report.knobs  # what was learned before the failure is kept


def test_comment_and_docstring_changes_are_inert(program, data):
    parent = UNIGRAM_TRAINER.read_text()
    edit(program, "def out_dir() -> str:\n", 'def out_dir() -> str:\n    """Where outputs go."""  # new\n')
    edit(program, "import array\n", "import array  # arrays of tokens\n\n\n")
    report = preflight(program, data=data, smoke_knobs=SMOKE_KNOBS, parent_source=parent)
    assert report.stage is PreflightStage.INERT
    assert "no effect" in report.reason


def test_a_changed_knob_default_is_not_inert(program, data):
    parent = UNIGRAM_TRAINER.read_text()
    edit(program, 'Knob("SMOOTHING", float, 0.5', 'Knob("SMOOTHING", float, 0.25')
    report = preflight(program, data=data, smoke_knobs={}, parent_source=parent)
    assert report.ok, report.reason


def test_smoke_run_failure_reports_the_traceback(program, data):
    edit(program, '    logp = log_probs(counts, cfg["SMOOTHING"])\n    val =', "    logp = []\n    val =")
    report = preflight(program, data=data, smoke_knobs=SMOKE_KNOBS)
    assert report.stage is PreflightStage.SMOKE
    assert report.reason.startswith("smoke run crashed: all phase exited with code 1")
    assert "IndexError" in report.log_excerpt


def test_smoke_knobs_reach_the_program(program, data):
    # A vocabulary smaller than the data's token ids crashes the trainer: proof the override arrived.
    report = preflight(program, data=data, smoke_knobs={"VOCAB_SIZE": "16"})
    assert report.stage is PreflightStage.SMOKE
    assert "IndexError" in report.log_excerpt


@pytest.mark.slow
def test_smoke_run_is_killed_after_timeout_seconds(program, data, tmp_path):
    report = preflight(
        program, data=data, smoke_knobs={"SLEEP_SECONDS": "60"}, timeout_seconds=2, out_dir=tmp_path / "smoke"
    )
    assert report.stage is PreflightStage.SMOKE
    assert "smoke run timeout" in report.reason
    assert report.seconds < 10
    assert (tmp_path / "smoke" / "result.json").is_file()  # kept because out_dir was given


def test_validation_cut_ends_just_before_the_last_document_start_in_the_window():
    tokens = np.array([1, 5, 6, 1, 7, 8, 9, 1, 4, 4, 4, 1, 3], dtype=np.uint16)
    assert cut_at_document_start(tokens, 10).tolist() == [1, 5, 6, 1, 7, 8, 9]
    assert cut_at_document_start(tokens, 11).tolist() == tokens[:11].tolist()  # a BOS right after fits
    # no document starts in the window's second half: cut mid-document rather than keep 2 tokens
    long_doc = np.array([1, 2, 1, 3, 4, 5, 6, 7, 8, 1], dtype=np.uint16)
    assert cut_at_document_start(long_doc, 8).tolist() == [1, 2, 1, 3, 4, 5, 6, 7]
    assert cut_at_document_start(np.array([1, 2, 3, 4, 5, 6], dtype=np.uint16), 4).tolist() == [1, 2, 3, 4]


@pytest.fixture
def big_val_data(tiny_data, tmp_path) -> tuple[DataPaths, np.ndarray]:
    """tiny_data's train shard with a validation split of ~1M tokens (its val tiled 40 times)."""
    folder = tmp_path / "big_val"
    folder.mkdir()
    for shard in tiny_data.dataset_dir.glob("fineweb_train_*.bin"):
        (folder / shard.name).symlink_to(shard)
    val = np.tile(load_split(tiny_data.dataset_dir, "val"), 40)
    write_shard(folder / "fineweb_val_000000.bin", val)
    return DataPaths(dataset_dir=folder, tokenizer_path=tiny_data.tokenizer_path), val


def test_smoke_run_sees_only_the_head_of_a_large_validation_split(
    program, big_val_data, tmp_path, monkeypatch
):
    data, val = big_val_data
    staging_root = tmp_path / "tmp"
    staging_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging_root))
    report = preflight(
        program, data=data, smoke_knobs=SMOKE_KNOBS, out_dir=tmp_path / "smoke", eval_seq_len=64
    )
    assert report.ok, (report.reason, report.log_excerpt)
    nll = np.fromfile(tmp_path / "smoke" / "run" / "val_nll.f32", dtype="<f4")
    seen = cut_at_document_start(val, 65536).size  # ends before a document start in the second half
    assert 32768 <= seen <= 65536 and val[seen] == 1
    assert nll.size == ((seen - 1) // 64) * 64  # eval_seq_len 64: the program scored the cut split
    assert not list(staging_root.iterdir())  # the staged dataset is gone
    assert read_shard(data.dataset_dir / "fineweb_val_000000.bin").size == val.size  # original untouched


def test_a_small_validation_split_is_used_as_it_is(program, data, tmp_path, tiny_data):
    report = preflight(
        program, data=data, smoke_knobs=SMOKE_KNOBS, out_dir=tmp_path / "smoke", eval_seq_len=32
    )
    assert report.ok, report.reason
    n_val = load_split(tiny_data.dataset_dir, "val").size
    # Scored at the harness's eval_seq_len (32), not the program's own EVAL_SEQ_LEN default (64).
    assert (
        np.fromfile(tmp_path / "smoke" / "run" / "val_nll.f32", dtype="<f4").size == ((n_val - 1) // 32) * 32
    )


def test_the_smoke_run_catches_a_look_ahead_before_any_gpu_time(data, tmp_path):
    program = make_program(tmp_path / "lookahead", "looks_ahead")
    report = preflight(program, data=data, smoke_knobs={}, eval_seq_len=64)
    assert report.stage is PreflightStage.SMOKE
    assert "integrity check 'causality' failed" in report.reason


def test_a_validation_shard_with_a_bad_header_is_a_harness_fault(program, tmp_path, tiny_data):
    folder = tmp_path / "broken"
    folder.mkdir()
    for shard in tiny_data.dataset_dir.glob("fineweb_train_*.bin"):
        (folder / shard.name).symlink_to(shard)
    (folder / "fineweb_val_000000.bin").write_bytes(b"\0" * 2048)
    data = DataPaths(dataset_dir=folder, tokenizer_path=tiny_data.tokenizer_path)
    with pytest.raises(HarnessError, match="fineweb_val_000000.bin: not a challenge shard"):
        preflight(program, data=data, smoke_knobs=SMOKE_KNOBS)
