"""preflight: each stage stops the candidates it should, and a sound candidate passes in seconds."""

from __future__ import annotations

import pytest

from sandbox import DataPaths, Limits, PreflightStage, preflight
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


def test_smoke_run_is_killed_after_timeout_seconds(program, data, tmp_path):
    report = preflight(
        program, data=data, smoke_knobs={"SLEEP_SECONDS": "60"}, timeout_seconds=2, out_dir=tmp_path / "smoke"
    )
    assert report.stage is PreflightStage.SMOKE
    assert "smoke run timeout" in report.reason
    assert report.seconds < 10
    assert (tmp_path / "smoke" / "result.json").is_file()  # kept because out_dir was given
