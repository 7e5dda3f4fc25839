"""Code bytes as the challenge counts them when a program ships self-extracting: the harness builds
the wrapper from the program's text and counts its bytes; the program cannot state its own count."""

from __future__ import annotations

from pathlib import Path

import pytest

from importer import unwrap_text
from sandbox import RunStatus, run
from sandbox.code_bytes import CodeBytes, counted_code_bytes, self_extracting

BASELINE = Path(__file__).resolve().parents[2] / "baseline" / "train_gpt.py"


@pytest.fixture
def backend_name() -> str:
    return "local"


def test_the_self_extracting_count_is_the_wrapper_the_harness_builds(tmp_path):
    source = BASELINE.read_text(encoding="utf-8")
    wrapper = self_extracting(source)
    assert unwrap_text(wrapper, filename="train_gpt.py").source == source  # the same program
    assert counted_code_bytes(BASELINE, CodeBytes.READABLE) == BASELINE.stat().st_size
    counted = counted_code_bytes(BASELINE, CodeBytes.SELF_EXTRACTING)
    assert counted == len(wrapper.encode()) and counted < 0.5 * BASELINE.stat().st_size


def test_a_run_counts_the_code_bytes_its_spec_asks_for(make_spec):
    readable = run(make_spec())
    wrapped = run(make_spec(code_bytes=CodeBytes.SELF_EXTRACTING))
    assert readable.status is RunStatus.OK and wrapped.status is RunStatus.OK
    folder = Path(make_spec().program_dir)
    entry, beside = folder / "train_gpt.py", folder / "unigram_trainer.py"  # a module shipped beside it
    assert readable.artifact.code == entry.stat().st_size + beside.stat().st_size
    assert wrapped.artifact.code == len(self_extracting(entry.read_text()).encode()) + beside.stat().st_size
    assert wrapped.artifact.model == readable.artifact.model and wrapped.val_bpb == readable.val_bpb
