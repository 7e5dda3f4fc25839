"""``sandbox.run`` behaviour that does not depend on the backend (run on the local one)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from sandbox import HarnessError, RunStatus, run
from sandbox.backends.containment import probe_containment
from sandbox.backends.local import LocalBackend
from sandbox.checks import timer_verdict
from sandbox.spec import DataPaths, IntegrityCheck, Plausibility, ProbeKind
from tests.sandbox.conftest import TEST_INTEGRITY, assert_nothing_left


@pytest.fixture
def backend_name() -> str:
    return "local"


def test_parent_far_worse_marks_an_ok_result_suspicious(make_spec):
    honest = run(make_spec())
    assert honest.status is RunStatus.OK and not honest.suspicious
    result = run(make_spec(plausibility=Plausibility(parent_bpb=honest.val_bpb + 0.5)))
    assert result.status is RunStatus.OK
    assert "beats the parent's" in result.suspicious
    within = run(make_spec(plausibility=Plausibility(parent_bpb=honest.val_bpb + 0.05)))
    assert within.suspicious == ""


@pytest.mark.slow
def test_the_seed_programs_result_and_the_floor_are_references_too(make_spec):
    honest = run(make_spec())
    seed = run(make_spec(plausibility=Plausibility(seed_bpb=honest.val_bpb + 0.3)))
    assert "beats the seed program's" in seed.suspicious
    # The first run of a tier has no parent and no seed to compare with: the floor still judges it.
    floor = run(make_spec(plausibility=Plausibility(floor_bpb=honest.val_bpb + 0.01)))
    assert "which no model of this size has come near" in floor.suspicious


def test_the_programs_own_curve_does_not_enter_plausibility(make_spec):
    """A final train loss of 9 next to a val loss of 5 says nothing: both are the program's numbers."""
    result = run(make_spec("tamper_outputs", knobs={"TAMPER": "inflated_train_loss"}))
    assert result.status is RunStatus.OK and result.suspicious == ""


def test_out_dir_layout_and_a_rerun_starts_clean(make_spec):
    spec = make_spec(integrity=TEST_INTEGRITY.model_copy(update={"probe": ProbeKind.FULL}))
    first = run(spec)
    assert first.status is RunStatus.OK
    names = {p.name for p in spec.out_dir.iterdir()}
    assert {
        "artifact",
        "train",
        "eval",
        "train.log",
        "eval.log",
        "probe-prefix",
        "probe-prefix.log",
        "probe-prefix-data",
        "probe-prefix-positions.i64",
        "probe-full",
        "probe-full.log",
        "result.json",
    } <= names
    assert first.log_path == spec.out_dir / "eval.log"  # the scored eval's, not a probe's
    (spec.out_dir / "artifact" / "stale.bin").write_bytes(b"x" * 1000)
    (spec.out_dir / "probe-full" / "stale.bin").write_bytes(b"x")
    second = run(spec.model_copy(update={"integrity": TEST_INTEGRITY}))
    assert second.artifact.model == first.artifact.model  # the stale file was cleared, not counted
    assert json.loads((spec.out_dir / "result.json").read_text())["artifact"]["model"] == first.artifact.model
    assert not (spec.out_dir / "probe-full").exists()  # nothing of the earlier run's full probe is left


def test_rows_are_asked_only_of_the_probe_after_the_scored_nll_exists(make_spec):
    spec = make_spec()
    first = run(spec)
    assert first.status is RunStatus.OK
    assert not (spec.out_dir / "eval" / "check_rows.f32").exists()  # the scored eval was asked nothing
    positions = np.fromfile(spec.out_dir / "probe-prefix-positions.i64", dtype="<i8")
    rows_bytes = positions.size * 512 * 4  # one float32 row of the 512-token vocabulary each
    assert (spec.out_dir / "probe-prefix" / "check_rows.f32").stat().st_size == rows_bytes
    assert first.probes[0].cut in positions.tolist()
    second = run(spec)
    assert second.probes[0].digest != first.probes[0].digest  # a fresh secret salt every run
    assert not np.array_equal(
        np.fromfile(spec.out_dir / "probe-prefix-positions.i64", dtype="<i8"), positions
    )


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
    ("claimed", "harness", "allowance", "expected"),
    [
        (599.0, 650.0, 180.0, None),
        (605.9, 650.0, 180.0, None),  # within the 1% overshoot of one last step
        (607.0, 650.0, 180.0, RunStatus.TIMEOUT),
        (30.0, 10.0, 180.0, RunStatus.INVALID),  # more training than the phase's whole wall time
        (-1.0, 10.0, 180.0, RunStatus.INVALID),
        (1.0, 30.4, 15.0, RunStatus.INVALID),  # trained through the start-up grace, claimed less
        (16.0, 30.4, 15.0, None),  # 14.4 s of start-up and export: within the grace
        (1.0, 30.4, None, None),  # no allowance given: not judged
    ],
)
def test_program_train_timer_verdicts(claimed, harness, allowance, expected):
    verdict = timer_verdict(
        claimed, harness_seconds=harness, limit_seconds=600.0, unaccounted_allowance_seconds=allowance
    )
    assert (verdict[0] if verdict else None) is expected


@pytest.fixture
def unconfined(probed_containment):
    """The local backend without bubblewrap: the program can reach what its user can."""
    return LocalBackend(dataclasses.replace(probed_containment, bwrap=None))


@pytest.fixture(scope="module")
def probed_containment():
    return probe_containment()


def private_data(tmp_path, tiny_data) -> DataPaths:
    """A copy of the tiny dataset a test may let a program damage."""
    folder = tmp_path / "private_data"
    shutil.copytree(tiny_data.dataset_dir, folder)
    tokenizer = tmp_path / tiny_data.tokenizer_path.name
    shutil.copy(tiny_data.tokenizer_path, tokenizer)
    return DataPaths(dataset_dir=folder, tokenizer_path=tokenizer)


def test_changing_the_validation_data_fails_the_run_whatever_else_it_did(
    make_spec, tmp_path, tiny_data, unconfined
):
    data = private_data(tmp_path, tiny_data)
    result = run(make_spec("tamper_outputs", knobs={"TAMPER": "write_val"}, data=data), backend=unconfined)
    assert result.status is RunStatus.INVALID and result.failed_check is IntegrityCheck.DATA
    assert "changed during this run" in result.reason and "restored" in result.reason
    assert result.val_bpb is None


def test_changing_the_artifact_after_it_was_counted_fails(make_spec, unconfined):
    result = run(make_spec("tamper_outputs", knobs={"TAMPER": "grow_artifact"}), backend=unconfined)
    assert result.status is RunStatus.INVALID and result.failed_check is IntegrityCheck.DATA
    assert "the artifact changed after it was measured" in result.reason
