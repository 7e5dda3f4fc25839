"""Running a program the way the challenge ran it (phases="published"), on both backends.

The record-like program (tests/programs/record_like) has no run contract: one process, its model
written to its working directory, its score printed on a final line. The harness measures its time
and bytes and takes the score from the log, marked self-reported.
"""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import pytest

from sandbox import RunStatus, run
from sandbox.published import reported_score
from sandbox.spec import RunSpec

RECORD_LIKE = Path(__file__).resolve().parent.parent / "programs" / "record_like" / "train_gpt.py"


@pytest.fixture
def published_spec(make_spec, tmp_path):
    counter = iter(range(1000))

    def build(program: Path = RECORD_LIKE, **knobs: str) -> RunSpec:
        spec = make_spec(phases="published", knobs={"ITERATIONS": "2", "VOCAB_SIZE": "512", **knobs})
        folder = tmp_path / f"record{next(counter)}"
        folder.mkdir()
        shutil.copy(program, folder / "train_gpt.py")
        return spec.model_copy(update={"program_dir": folder})

    return build


def test_a_published_run_reports_the_programs_own_score_and_counts_its_compressed_model(published_spec):
    spec = published_spec()
    result = run(spec)
    assert result.status is RunStatus.OK, result.reason
    assert result.self_reported and not result.verified and not result.probes
    final = [line for line in result.log_path.read_text().splitlines() if line.startswith("final_")][-1]
    assert f"val_bpb:{result.val_bpb:.8f}" in final and f"val_loss:{result.val_loss:.8f}" in final
    model = spec.out_dir / "work" / "final_model.int8.ptz"
    raw = (spec.out_dir / "work" / "final_model.pt").read_bytes()
    assert zlib.decompress(model.read_bytes()) == raw  # the program wrote both where it ran
    # Its bytes are the code and the compressed model only, not the raw checkpoint beside it.
    assert result.artifact.code == (spec.program_dir / "train_gpt.py").stat().st_size
    assert result.artifact.model == model.stat().st_size < len(raw)


def test_the_score_is_what_the_log_says_even_when_the_program_inflates_it(published_spec):
    honest, claimed = run(published_spec()), run(published_spec(CLAIM_OFFSET="-0.5"))
    assert claimed.self_reported and claimed.val_bpb == pytest.approx(honest.val_bpb - 0.5, abs=1e-6)


def test_a_published_run_without_a_score_or_a_model_is_invalid(published_spec, tmp_path):
    silent = tmp_path / "silent.py"
    silent.write_text(RECORD_LIKE.read_text().replace("val_bpb:", "bits:"))
    result = run(published_spec(silent))
    assert result.status is RunStatus.INVALID and "names no val_bpb" in result.reason
    no_model = tmp_path / "no_model.py"
    no_model.write_text(RECORD_LIKE.read_text().replace("final_model.int8.ptz", "final_model.int8.bin"))
    result = run(published_spec(no_model))
    assert result.status is RunStatus.INVALID and "no compressed model (*.ptz)" in result.reason


def test_the_last_line_naming_val_bpb_is_the_score(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(
        "pre-quantization post-ema val_loss:2.81 val_bpb:1.0899 eval_time:6003ms\n"
        "quantized_sliding_window val_loss:2.80405024 val_bpb:1.08553523 eval_time:83990ms\n"
        "ttt_sliding:done val_loss=1.891102 val_bpb=1.120020 elapsed=407.5s\n"
        "peak memory 30 GiB\n"
    )
    score = reported_score(log)
    assert (score.val_bpb, score.val_loss) == (1.120020, 1.891102)
    log.write_text("step:1/2\n")
    assert reported_score(log) is None
