"""``sandbox.run`` behaviour that does not depend on the backend (run on the local one)."""

from __future__ import annotations

import json

import pytest

from sandbox import HarnessError, RunStatus, run
from sandbox.checks import timer_verdict
from sandbox.spec import DataPaths
from tests.sandbox.conftest import assert_nothing_left


@pytest.fixture
def backend_name() -> str:
    return "local"


def test_parent_far_worse_marks_an_ok_result_suspicious(make_spec):
    honest = run(make_spec())
    assert honest.status is RunStatus.OK and not honest.suspicious
    result = run(make_spec(reference_bpb=honest.val_bpb + 0.5))
    assert result.status is RunStatus.OK
    assert "beats the parent's" in result.suspicious
    within = run(make_spec(reference_bpb=honest.val_bpb + 0.05))
    assert within.suspicious == ""


def test_validation_loss_far_below_the_final_train_loss_is_suspicious(make_spec):
    result = run(make_spec("tamper_outputs", knobs={"TAMPER": "inflated_train_loss"}))
    assert result.status is RunStatus.OK
    assert "nats below the final train loss 9.0000" in result.suspicious
    lenient = run(
        make_spec("tamper_outputs", knobs={"TAMPER": "inflated_train_loss"}, max_val_below_train_nats=5)
    )
    assert lenient.suspicious == ""


def test_out_dir_layout_and_a_rerun_starts_clean(make_spec):
    spec = make_spec()
    first = run(spec)
    assert first.status is RunStatus.OK
    names = {p.name for p in spec.out_dir.iterdir()}
    assert {
        "artifact",
        "train",
        "eval",
        "train.log",
        "eval.log",
        "check_positions.i64",
        "result.json",
    } <= names
    assert first.log_path == spec.out_dir / "eval.log"
    (spec.out_dir / "artifact" / "stale.bin").write_bytes(b"x" * 1000)
    second = run(spec)
    assert second.artifact.model == first.artifact.model  # the stale file was cleared, not counted
    assert json.loads((spec.out_dir / "result.json").read_text())["artifact"]["model"] == first.artifact.model


def test_check_positions_reach_the_program_and_change_per_run(make_spec):
    spec = make_spec()
    rows_bytes = spec.check_positions * 512 * 4  # one float32 row of the 512-token vocabulary each
    assert run(spec).status is RunStatus.OK
    first = (spec.out_dir / "check_positions.i64").read_bytes()
    assert (spec.out_dir / "eval" / "check_rows.f32").stat().st_size == rows_bytes
    assert run(spec).status is RunStatus.OK
    second = (spec.out_dir / "check_positions.i64").read_bytes()
    assert len(first) == 8 * spec.check_positions and first != second


def test_missing_data_is_a_harness_error_naming_the_folder(make_spec, tmp_path, tiny_data):
    empty = tmp_path / "no_data"
    empty.mkdir()
    spec = make_spec(data=DataPaths(dataset_dir=empty, tokenizer_path=tiny_data.tokenizer_path))
    with pytest.raises(HarnessError, match="no_data needs both fineweb_train"):
        run(spec)


def test_a_failing_callback_kills_the_run_and_is_raised(make_spec):
    spec = make_spec(knobs={"SLEEP_SECONDS": "20"})

    def broken(event):
        raise KeyError("caller bug")

    with pytest.raises(KeyError, match="caller bug"):
        run(spec, on_event=broken)
    assert_nothing_left(spec.knobs["HOSTILE_MARKER"])


@pytest.mark.parametrize(
    ("claimed", "harness", "expected"),
    [
        (599.0, 650.0, None),
        (605.9, 650.0, None),  # within the 1% overshoot of one last step
        (607.0, 650.0, RunStatus.TIMEOUT),
        (30.0, 10.0, RunStatus.INVALID),  # more training than the phase's whole wall time
        (-1.0, 10.0, RunStatus.INVALID),
    ],
)
def test_program_train_timer_verdicts(claimed, harness, expected):
    verdict = timer_verdict(claimed, harness_seconds=harness, limit_seconds=600.0)
    assert (verdict[0] if verdict else None) is expected
