"""The backend contract suite: honest and hostile programs through ``sandbox.run`` on every backend.

Each test asserts the status, the reason, and that nothing the program started is still running.
Hostile programs live in tests/sandbox/programs/ and use only the standard library.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sandbox import RunStatus, run
from sandbox.spec import ProgressEvent
from tests.sandbox.conftest import FAST_LIMITS, assert_nothing_left

TIGHT = FAST_LIMITS.model_copy(
    update={"train_seconds": 1.0, "eval_seconds": 1.0, "startup_grace_seconds": 1.5}
)


def marker_of(spec) -> str:
    return spec.knobs["HOSTILE_MARKER"]


@pytest.mark.parametrize("phases", ["split", "all"])
def test_honest_program_is_scored_by_the_harness(make_spec, phases):
    spec = make_spec(phases=phases)
    result = run(spec)
    assert result.status is RunStatus.OK, (result.reason, result.error_excerpt)
    nll_file = spec.out_dir / ("eval" if phases == "split" else "run") / "val_nll.f32"
    nll = np.fromfile(nll_file, dtype="<f4")
    assert result.val_loss == pytest.approx(float(nll.astype(np.float64).mean()), rel=1e-9)
    assert 3.0 < result.val_bpb < 6.0  # a unigram model of English BPE tokens: ~4 bits per byte
    assert result.artifact.code == (spec.program_dir / "train_gpt.py").stat().st_size
    assert result.artifact.model == sum(p.stat().st_size for p in (spec.out_dir / "artifact").iterdir())
    assert [p.step for p in result.curve] == [1, 2, 3, 4]
    assert result.steps == 4 and not result.suspicious
    stored = json.loads((spec.out_dir / "result.json").read_text())
    assert stored["status"] == "ok" and stored["val_bpb"] == result.val_bpb
    if phases == "split":
        assert result.train_seconds > 0 and result.eval_seconds > 0
        assert result.program_train_seconds <= result.train_seconds


def test_infinite_loop_times_out_and_leaves_nothing_running(make_spec):
    spec = make_spec("infinite_loop", limits=TIGHT)
    result = run(spec)
    assert result.status is RunStatus.TIMEOUT
    assert "train phase ran past" in result.reason
    assert result.wall_seconds < 15
    assert_nothing_left(marker_of(spec))


def test_detached_daemon_is_killed_and_the_run_still_scored(make_spec):
    spec = make_spec("detached_daemon")
    result = run(spec)
    assert result.status is RunStatus.OK, (result.reason, result.error_excerpt)
    assert_nothing_left(marker_of(spec))


def test_stdout_flood_is_capped_and_the_disk_safe(make_spec):
    limits = FAST_LIMITS.model_copy(update={"max_log_bytes": 256 * 1024})
    spec = make_spec("stdout_flood", limits=limits, knobs={"FLOOD_MEGABYTES": "24"})
    result = run(spec)
    assert result.status is RunStatus.OK, (result.reason, result.error_excerpt)
    train_log = spec.out_dir / "train.log"
    # The cap plus at most a truncation note, never the 25 MB the program wrote.
    assert train_log.stat().st_size <= limits.max_log_bytes + 4096
    assert any("capped" in note for note in result.notes)
    assert_nothing_left(marker_of(spec))


def test_fork_bomb_is_contained(make_spec):
    limits = TIGHT.model_copy(update={"max_processes": 64})
    spec = make_spec("fork_bomb", limits=limits, knobs={"FORK_ATTEMPTS": "300"})
    result = run(spec)
    assert result.status in (RunStatus.TIMEOUT, RunStatus.CRASHED)
    assert_nothing_left(marker_of(spec), grace_seconds=5)


def test_memory_hog_is_reported_as_oom(make_spec):
    limits = FAST_LIMITS.model_copy(update={"memory_bytes": 256 * 1024**2})
    spec = make_spec("memory_hog", limits=limits, knobs={"HOG_MEGABYTES": "2048"})
    result = run(spec)
    assert result.status is RunStatus.OOM, (result.reason, result.error_excerpt)
    assert "memory" in result.reason
    assert_nothing_left(marker_of(spec))


def test_fake_excellent_bpb_is_ignored(make_spec):
    spec = make_spec("tamper_outputs", knobs={"TAMPER": "fake_bpb"})
    result = run(spec)
    assert result.status is RunStatus.OK, result.reason
    assert result.claimed_bpb == pytest.approx(0.01)
    assert result.val_bpb > 3.0


def test_reading_validation_data_while_training_crashes(make_spec):
    result = run(make_spec("reads_val_in_train"))
    assert result.status is RunStatus.CRASHED
    assert result.reason.startswith("train phase exited with code")
    assert "FileNotFoundError" in result.error_excerpt and "fineweb_val_" in result.error_excerpt
    assert result.val_bpb is None


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("short_nll", "validation tokens at eval_seq_len"),
        ("nan_nll", "NaN or infinite"),
        ("negative_nll", "is negative"),
        ("unnormalized_rows", "is not normalized"),
        ("disagreeing_rows", "but val_nll.f32 says"),
        ("wrong_vocab", "vocab_size 513 but the tokenizer has 512"),
        ("symlink_artifact", "link or special file"),
    ],
)
def test_broken_outputs_are_invalid_with_the_reason(make_spec, tamper, reason):
    spec = make_spec("tamper_outputs", knobs={"TAMPER": tamper})
    result = run(spec)
    assert result.status is RunStatus.INVALID
    assert reason in result.reason
    assert result.val_bpb is None


def test_program_timer_above_the_harness_clock_is_invalid(make_spec):
    result = run(make_spec("tamper_outputs", knobs={"TAMPER": "timer_lie", "TIMER_LIE_SECONDS": "500"}))
    assert result.status is RunStatus.INVALID
    assert "program timer disagrees with the harness" in result.reason


def test_program_timer_over_the_train_limit_is_a_timeout(make_spec):
    limits = FAST_LIMITS.model_copy(update={"train_seconds": 0.2})
    knobs = {"TAMPER": "timer_lie", "TIMER_LIE_SLEEP": "1.6", "TIMER_LIE_SECONDS": "1.5"}
    result = run(make_spec("tamper_outputs", knobs=knobs, limits=limits))
    assert result.status is RunStatus.TIMEOUT
    assert "train timer reads 1.5 s" in result.reason


def test_oversized_artifact_is_over_size_with_its_bytes(make_spec):
    limits = FAST_LIMITS.model_copy(update={"artifact_bytes": 100_000})
    spec = make_spec("tamper_outputs", knobs={"TAMPER": "oversized_artifact"}, limits=limits)
    result = run(spec)
    assert result.status is RunStatus.OVER_SIZE
    assert result.artifact.model > 300_000 and result.artifact.total > 100_000
    assert "100,000-byte limit" in result.reason


def test_crash_reports_the_last_traceback(make_spec):
    result = run(make_spec("tamper_outputs", knobs={"TAMPER": "crash"}))
    assert result.status is RunStatus.CRASHED
    assert "eval phase exited with code 1" in result.reason
    assert "RuntimeError: boom" in result.reason
    assert result.error_excerpt.startswith("Traceback (most recent call last):")
    assert result.curve  # the train phase's curve is kept


def test_malformed_curve_lines_are_skipped_and_noted(make_spec):
    seen: list[ProgressEvent] = []
    result = run(make_spec("tamper_outputs", knobs={"TAMPER": "garbage_curve"}), on_event=seen.append)
    assert result.status is RunStatus.OK, result.reason
    assert [p.step for p in result.curve] == [1, 2, 3, 4]
    assert any("malformed" in note for note in result.notes)


def test_on_event_sees_progress_and_stop_prunes_the_run(make_spec):
    spec = make_spec(knobs={"SLEEP_SECONDS": "20"})
    seen: list[ProgressEvent] = []

    def prune_after_first(event: ProgressEvent) -> str:
        seen.append(event)
        return "stop"

    result = run(spec, on_event=prune_after_first)
    assert result.status is RunStatus.PRUNED
    assert seen and seen[0].step == 1 and seen[0].train_loss > 0
    assert result.wall_seconds < 10
    assert result.val_bpb is None
    assert_nothing_left(marker_of(spec))


def test_network_is_unreachable_inside_docker(make_spec, backend_name):
    if backend_name != "docker":
        pytest.skip("only the docker backend cuts the network")
    result = run(make_spec("network_socket"))
    assert result.status is RunStatus.CRASHED
    assert "Error" in result.error_excerpt


def test_writing_outside_the_output_folder_fails_inside_docker(make_spec, backend_name, tiny_data):
    if backend_name != "docker":
        pytest.skip("only the docker backend mounts the program and data read-only")
    spec = make_spec("write_outside")
    result = run(spec)
    assert result.status is RunStatus.CRASHED
    assert "Read-only file system" in result.error_excerpt or "Permission denied" in result.error_excerpt
    assert not (spec.program_dir / "pwned.txt").exists()
    assert not (tiny_data.dataset_dir / "pwned.txt").exists()
