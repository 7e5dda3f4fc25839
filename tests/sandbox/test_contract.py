"""The backend contract suite: honest and hostile programs through ``sandbox.run`` on every backend.

Each test asserts the status, the reason, and that nothing the program started is still running.
Hostile programs live in tests/sandbox/programs/ and use only the standard library.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sandbox import RunStatus, probe_bwrap, run
from sandbox.spec import IntegrityCheck, ProbeKind, ProgressEvent, StopRequest
from tests.sandbox.conftest import FAST_LIMITS, TEST_INTEGRITY, assert_nothing_left

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
    # The code is every Python file the program ships with: here its entry and the trainer beside it.
    assert result.artifact.code == sum(p.stat().st_size for p in spec.program_dir.glob("*.py"))
    assert result.artifact.model == sum(p.stat().st_size for p in (spec.out_dir / "artifact").iterdir())
    assert [p.step for p in result.curve] == [1, 2, 3, 4]
    assert result.steps == 4 and not result.suspicious
    (check,) = result.probes
    assert check.probe is ProbeKind.PREFIX and check.changed == 0 and check.rows_checked == 32
    assert 0 < check.cut == check.compared < check.probe_targets < nll.size  # a real prefix of the stream
    assert not result.verified  # only a full probe makes a result fit to be a parent of record
    stored = json.loads((spec.out_dir / "result.json").read_text())
    assert stored["status"] == "ok" and stored["val_bpb"] == result.val_bpb
    if phases == "split":
        assert result.train_seconds > 0 and result.eval_seconds > 0
        assert result.program_train_seconds <= result.train_seconds


@pytest.mark.slow
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


@pytest.mark.slow
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
    ("tamper", "reason", "check"),
    [
        ("short_nll", "validation tokens at the harness's eval_seq_len 64 need", IntegrityCheck.COVERAGE),
        (
            "claimed_seq_len",
            "validation tokens at the harness's eval_seq_len 64 need",
            IntegrityCheck.COVERAGE,
        ),
        ("nan_nll", "NaN or infinite", None),
        ("negative_nll", "is negative", None),
        ("unnormalized_rows", "is not normalized", IntegrityCheck.ROWS),
        ("disagreeing_rows", "but val_nll.f32 says", IntegrityCheck.ROWS),
        ("wrong_vocab", "vocab_size 513 but the tokenizer has 512", None),
        ("symlink_artifact", "link or special file", None),
    ],
)
def test_broken_outputs_are_invalid_with_the_reason(make_spec, tamper, reason, check):
    spec = make_spec("tamper_outputs", knobs={"TAMPER": tamper})
    result = run(spec)
    assert result.status is RunStatus.INVALID
    assert reason in result.reason
    assert result.failed_check is check
    if check is not None:
        assert result.reason.startswith(f"integrity check '{check}' failed: ")
    assert result.val_bpb is None


@pytest.mark.parametrize("phases", ["split", "all"])
def test_look_ahead_at_the_whole_stream_fails_causality(make_spec, phases):
    result = run(make_spec("looks_ahead", phases=phases))
    assert result.status is RunStatus.INVALID and result.failed_check is IntegrityCheck.CAUSALITY
    assert "changed when the tokens after it were replaced" in result.reason
    assert result.val_bpb is None and result.probes == []


def test_look_ahead_fails_the_full_probe_too(make_spec):
    full = TEST_INTEGRITY.model_copy(update={"probe": ProbeKind.FULL})
    result = run(make_spec("looks_ahead", integrity=full, knobs={"LOOKAHEAD_WEIGHT": "0.02"}))
    assert result.failed_check is IntegrityCheck.CAUSALITY, result.reason


def test_a_look_ahead_inside_each_eval_window_fails_causality(make_spec):
    """Caught because the cut falls anywhere, not only at a sequence boundary.

    At this window length the prefix probe's cut (5-10% of ~25k targets) always lies inside the first
    window, where the positions before it lean on tokens after it: a miss would be a real hole, not the
    luck of a cut at a window's last input (a 1-in-``eval_seq_len`` chance that no single probe avoids).
    """
    result = run(make_spec("peeks_in_window", eval_seq_len=4096))
    assert result.status is RunStatus.INVALID and result.failed_check is IntegrityCheck.CAUSALITY, (
        result.reason
    )


@pytest.mark.slow
def test_honest_only_where_rows_are_checked_fails(make_spec):
    """The old hole: positions known before the NLL file is written, rows honest exactly there."""
    result = run(make_spec("boosts_targets", knobs={"BOOST": "unchecked"}))
    assert result.status is RunStatus.INVALID
    assert result.failed_check in (IntegrityCheck.CAUSALITY, IntegrityCheck.TARGET_BLIND), result.reason


def test_rows_built_around_their_targets_fail_target_blind(make_spec):
    result = run(make_spec("boosts_targets", knobs={"BOOST": "everywhere"}))
    assert result.status is RunStatus.INVALID and result.failed_check is IntegrityCheck.TARGET_BLIND
    assert "the distribution depends on the target it scores" in result.reason


def test_claimed_perfection_is_not_a_score(make_spec):
    """Train loss 0, NLL 0 and one-hot rows: normalized and self-consistent, and still refused."""
    result = run(make_spec("perfect_claims"))
    assert result.status is RunStatus.INVALID and result.failed_check is IntegrityCheck.TARGET_BLIND
    assert result.val_bpb is None


def test_scoring_a_model_the_artifact_does_not_hold_fails_causality(make_spec):
    result = run(make_spec("scores_memory", phases="all"))
    assert result.status is RunStatus.INVALID and result.failed_check is IntegrityCheck.CAUSALITY
    assert "something the artifact does not hold" in result.reason


def test_a_crash_in_the_probe_names_the_probe(make_spec):
    result = run(make_spec("tamper_outputs", knobs={"TAMPER": "crash_in_probe"}))
    assert result.status is RunStatus.CRASHED and result.failed_check is IntegrityCheck.PROBE
    assert result.reason.startswith(
        "integrity check 'probe' failed: integrity probe's eval (prefix) exited with code 1"
    )
    assert "only when rows are asked for" in result.error_excerpt


def test_a_probe_that_links_to_the_scored_nll_is_refused(make_spec):
    result = run(make_spec("tamper_outputs", knobs={"TAMPER": "link_probe_nll"}))
    assert result.status is RunStatus.INVALID and result.failed_check is IntegrityCheck.PROBE
    assert "val_nll.f32 is a link" in result.reason


@pytest.mark.parametrize(
    ("program", "knobs"),
    [
        ("score_first_ttt", {}),  # legal test-time training: updates only on scored tokens
        ("float_noise", {}),  # causal, with float noise that differs between runs
        (None, {"EVAL_SLEEP_SECONDS": "1.5"}),  # an eval phase slower than its train phase
    ],
)
@pytest.mark.slow
@pytest.mark.parametrize("probe", [ProbeKind.PREFIX, ProbeKind.FULL])
def test_honest_controls_pass_every_integrity_check(make_spec, program, knobs, probe):
    spec = make_spec(program, knobs=knobs, integrity=TEST_INTEGRITY.model_copy(update={"probe": probe}))
    result = run(spec)
    assert result.status is RunStatus.OK, (result.reason, result.error_excerpt)
    assert [p.probe for p in result.probes] == [ProbeKind.PREFIX] + (
        [ProbeKind.FULL] if probe is ProbeKind.FULL else []
    )
    assert result.failed_check is None
    assert result.verified is (probe is ProbeKind.FULL)


def test_legal_test_time_training_really_adapts(make_spec):
    """The TTT control is not a disguised unigram: it scores better than the plain model."""
    plain, adapted = run(make_spec()), run(make_spec("score_first_ttt"))
    assert adapted.val_bpb < plain.val_bpb - 0.002


def test_program_timer_above_the_harness_clock_is_invalid(make_spec):
    result = run(make_spec("tamper_outputs", knobs={"TAMPER": "timer_lie", "TIMER_LIE_SECONDS": "500"}))
    assert result.status is RunStatus.INVALID
    assert "program timer disagrees with the harness" in result.reason


@pytest.mark.slow
def test_training_through_the_start_up_grace_is_invalid(make_spec):
    """Trains (sleeps) 6 s and claims 1 s: within the phase's 8 s wall limit (4 s + 4 s of start-up
    grace), so it is not killed, but 5 s are unaccounted for (the issue's 30.4 s against 20 + 15)."""
    limits = FAST_LIMITS.model_copy(update={"train_seconds": 4.0, "startup_grace_seconds": 4.0})
    knobs = {"TAMPER": "timer_lie", "TIMER_LIE_SLEEP": "6", "TIMER_LIE_SECONDS": "1.0"}
    result = run(make_spec("tamper_outputs", knobs=knobs, limits=limits))
    assert result.status is RunStatus.INVALID and result.failed_check is IntegrityCheck.TRAIN_TIME
    assert "unaccounted for, more than the 4 s allowed" in result.reason


def test_program_timer_over_the_train_limit_is_a_timeout(make_spec):
    limits = FAST_LIMITS.model_copy(update={"train_seconds": 0.2})
    knobs = {"TAMPER": "timer_lie", "TIMER_LIE_SLEEP": "1.6", "TIMER_LIE_SECONDS": "1.5"}
    result = run(make_spec("tamper_outputs", knobs=knobs, limits=limits))
    assert result.status is RunStatus.TIMEOUT and result.failed_check is IntegrityCheck.TRAIN_TIME
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

    def prune_after_first(event: ProgressEvent) -> StopRequest:
        seen.append(event)
        return StopRequest.PRUNE

    result = run(spec, on_event=prune_after_first)
    assert result.status is RunStatus.PRUNED and result.stopped_by is StopRequest.PRUNE
    assert seen and seen[0].step == 1 and seen[0].train_loss > 0
    assert result.wall_seconds < 10
    assert result.val_bpb is None
    assert_nothing_left(marker_of(spec))


def _skip_unless_a_boundary(backend_name: str) -> None:
    """Docker is always one; the local backend is one where bubblewrap works (its confined mode)."""
    if backend_name == "local" and probe_bwrap().bwrap is None:
        pytest.skip("the local backend is unconfined here (no working bwrap): no boundary to test")


def test_network_is_unreachable_inside_the_sandbox(make_spec, backend_name):
    _skip_unless_a_boundary(backend_name)
    result = run(make_spec("network_socket"))
    assert result.status is RunStatus.CRASHED
    assert "Error" in result.error_excerpt


def test_writing_outside_the_output_folder_fails_inside_the_sandbox(make_spec, backend_name, tiny_data):
    _skip_unless_a_boundary(backend_name)
    spec = make_spec("write_outside")
    result = run(spec)
    assert result.status is RunStatus.CRASHED
    assert "Read-only file system" in result.error_excerpt or "Permission denied" in result.error_excerpt
    assert not (spec.program_dir / "pwned.txt").exists()
    assert not (tiny_data.dataset_dir / "pwned.txt").exists()
