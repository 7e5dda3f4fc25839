"""Reading untrusted program outputs: NLL files, check rows, positions, result.json, logs, curves."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest

from sandbox.outputs import (
    CoverageError,
    OutputError,
    last_traceback,
    measure_artifact,
    read_curve,
    read_nll,
    read_program_report,
    read_rows,
)
from sandbox.progress import CurveTailer
from sandbox.spec import StopRequest

VOCAB = 8


def write_f32(path, values):
    np.asarray(values, dtype="<f4").tofile(path)
    return path


def test_nll_length_must_cover_whole_sequences_of_the_harness_length(tmp_path):
    # 101 tokens -> 100 targets; at the harness's eval_seq_len 30 exactly 90 must be scored.
    path = write_f32(tmp_path / "val_nll.f32", np.ones(90))
    assert read_nll(path, num_val_tokens=101, eval_seq_len=30).size == 90
    write_f32(path, np.ones(89))
    with pytest.raises(CoverageError, match="holds 89 values .* at the harness's eval_seq_len 30 need 90"):
        read_nll(path, num_val_tokens=101, eval_seq_len=30)
    # What a program that claims eval_seq_len 51 would write covers half: the harness's 30 decides.
    write_f32(path, np.ones(51))
    with pytest.raises(CoverageError, match="holds 51 values"):
        read_nll(path, num_val_tokens=101, eval_seq_len=30)


@pytest.mark.parametrize(
    ("bad", "message"), [(math.nan, "NaN or infinite"), (math.inf, "NaN"), (-0.1, "negative")]
)
def test_nll_rejects_nan_infinite_and_negative_values(tmp_path, bad, message):
    values = np.ones(90)
    values[17] = bad
    path = write_f32(tmp_path / "val_nll.f32", values)
    with pytest.raises(OutputError, match=f"position 17 .*{message}"):
        read_nll(path, num_val_tokens=101, eval_seq_len=30)


def uniform_rows(count):
    return np.full((count, VOCAB), -math.log(VOCAB))


def test_normalized_rows_that_agree_with_the_nll_pass_and_tampered_ones_fail(tmp_path):
    val = np.arange(20, dtype=np.uint16) % VOCAB
    nll = np.full(19, math.log(VOCAB), dtype=np.float32)
    positions = np.array([7, 2, 5])  # in the order asked, not sorted

    def rows(nll_values=nll):
        return read_rows(path, positions, VOCAB, val, nll_values)

    path = write_f32(tmp_path / "check_rows.f32", uniform_rows(3))
    assert rows().shape == (3, VOCAB)

    write_f32(path, uniform_rows(3) + math.log(277))  # the famous "sums to ~277" cache
    with pytest.raises(OutputError, match="not normalized .*sum to 277"):
        rows()

    lying = nll.copy()
    lying[5] = 0.5
    write_f32(path, uniform_rows(3))
    with pytest.raises(OutputError, match="at position 5 the row gives NLL 2.07944"):
        rows(lying)

    write_f32(path, uniform_rows(2))
    with pytest.raises(OutputError, match="3 rows of 8 float32 need 96"):
        rows()


def test_result_json_must_be_an_object_with_integer_lengths(tmp_path):
    path = tmp_path / "result.json"
    with pytest.raises(OutputError, match="wrote no result.json"):
        read_program_report(path, required=True)
    assert read_program_report(path, required=False).train_seconds is None
    path.write_text("[1, 2]")
    with pytest.raises(OutputError, match="JSON object"):
        read_program_report(path, required=True)
    path.write_text(json.dumps({"eval_seq_len": 1.5, "vocab_size": 8}))
    with pytest.raises(OutputError, match="eval_seq_len must be an integer"):
        read_program_report(path, required=True)
    path.write_text(json.dumps({"eval_seq_len": 64, "vocab_size": 8, "val_bpb": "great", "train_seconds": 3}))
    report = read_program_report(path, required=True)
    assert (report.eval_seq_len, report.claimed_bpb, report.train_seconds) == (64, None, 3.0)


def test_artifact_bytes_are_script_plus_every_file_and_links_are_refused(tmp_path):
    script = tmp_path / "train_gpt.py"
    script.write_text("x = 1\n")
    artifact = tmp_path / "artifact"
    (artifact / "sub").mkdir(parents=True)
    (artifact / "model.bin").write_bytes(b"a" * 100)
    (artifact / "sub" / "extra.bin").write_bytes(b"b" * 23)
    measured = measure_artifact(script, artifact)
    assert (measured.code, measured.model, measured.total) == (6, 123, 129)
    (artifact / "link").symlink_to(script)
    with pytest.raises(OutputError, match="artifact/link is a link"):
        measure_artifact(script, artifact)


def test_last_traceback_is_the_final_one_in_the_log(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(
        "step 1\nTraceback (most recent call last):\n  File x\nValueError: first\nretrying\n"
        "Traceback (most recent call last):\n  File y\nKeyError: 'second'\n"
    )
    assert last_traceback(log) == "Traceback (most recent call last):\n  File y\nKeyError: 'second'"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert last_traceback(log).splitlines() == [f"line {i}" for i in range(80, 100)]


def test_curve_tailer_waits_for_whole_lines_and_skips_garbage(tmp_path):
    path = tmp_path / "curve.jsonl"
    events = []
    tailer = CurveTailer(path, events.append, threading.Event())
    tailer.poll()  # no file yet: nothing happens
    path.write_text('{"step": 1, "train_loss": 5.0, "elapsed_ms": 10}\n{"step": 2, "train_lo')
    tailer.poll()
    assert [e.step for e in events] == [1]
    with path.open("a") as f:
        f.write('ss": 4.0, "elapsed_ms": 20}\nnot json\n')
    tailer.poll()
    assert [(e.step, e.train_loss) for e in events] == [(1, 5.0), (2, 4.0)]
    assert tailer.malformed_lines == 1


def test_curve_tailer_stops_the_run_when_the_callback_says_stop(tmp_path):
    path = tmp_path / "curve.jsonl"
    path.write_text(
        "".join(json.dumps({"step": s, "train_loss": 1.0, "elapsed_ms": s}) + "\n" for s in (1, 2, 3))
    )
    stop = threading.Event()
    seen = []
    tailer = CurveTailer(
        path, lambda e: seen.append(e.step) or (StopRequest.PRUNE if e.step == 2 else None), stop
    )
    tailer.poll()
    assert stop.is_set() and tailer.stop_requested_at_step == 2
    assert tailer.stop_request is StopRequest.PRUNE and tailer.callback_error is None
    assert seen == [1, 2]  # nothing is delivered once a stop was asked for


@pytest.mark.parametrize("answer", ["stop", True, 0])
def test_an_answer_that_is_not_a_stop_request_stops_the_run_as_the_callers_error(tmp_path, answer):
    """A caller that answers the old ``"stop"`` string (or any stray value) meant something: the run is
    stopped and the caller hears of it, instead of the answer being ignored and the run going on."""
    path = tmp_path / "curve.jsonl"
    path.write_text(json.dumps({"step": 1, "train_loss": 1.0, "elapsed_ms": 1}) + "\n")
    stop = threading.Event()
    tailer = CurveTailer(path, lambda e: answer, stop)
    tailer.poll()
    assert stop.is_set() and isinstance(tailer.callback_error, TypeError)
    assert repr(answer) in str(tailer.callback_error) and tailer.stop_request is None


def test_oversized_result_json_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "result.json"
    path.write_text('{"eval_seq_len": 64, "vocab_size": 8, "pad": "' + "x" * 1_100_000 + '"}')
    with pytest.raises(OutputError, match="over 1,000,000 bytes"):
        read_program_report(path, required=True)


def test_curve_reader_skips_giant_and_broken_lines(tmp_path):
    path = tmp_path / "curve.jsonl"
    good = [json.dumps({"step": s, "train_loss": 2.0, "elapsed_ms": s}) for s in (1, 2)]
    path.write_text(
        good[0] + "\n" + "z" * 300_000 + "\n" + '{"step": 9}\n' + good[1]
    )  # last line unterminated
    points, skipped = read_curve(path)
    assert [p.step for p in points] == [1, 2]
    assert skipped >= 2
