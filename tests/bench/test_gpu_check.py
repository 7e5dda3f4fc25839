"""bench/gpu_check.sh, the device check: where CUDA is absent it stops at once and says so; its report."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
_spec = importlib.util.spec_from_file_location("gpu_check_report", ROOT / "bench" / "gpu_check_report.py")
gpu_check_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check_report)


def check(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GPU_CHECK_OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    env["CUDA_VISIBLE_DEVICES"] = ""  # no GPU, even on a machine that has one
    env.pop("GPU_CHECK_REHEARSE", None)
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120)


def test_without_cuda_the_check_exits_at_once_with_one_line_and_writes_nothing(tmp_path):
    started = time.monotonic()
    proc = check(tmp_path)
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: CUDA is absent"), proc.stderr
    assert "sees no CUDA device" in lines[0] and "--rehearse" in lines[0]
    assert proc.stdout == "" and not (tmp_path / "out").exists()
    assert elapsed < 60  # importing torch and nothing else (seconds, even on a loaded 2-core machine)


def test_an_unknown_argument_is_refused_before_anything_runs(tmp_path):
    proc = check(tmp_path, "--rehears")
    assert proc.returncode == 2 and "unknown argument --rehears" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_summary_fails_when_a_step_failed_and_names_the_numbers(tmp_path):
    device = {"device": "NVIDIA H200", "compressors": ["zlib"]}
    (tmp_path / "pytest_gpu.log").write_text("....\n3 passed, 2 skipped, 74 deselected in 61.20s\n")
    steps = [{"step": "pytest_gpu", "rc": 0, "seconds": 60, "timeout_s": 150}]
    steps.append({"step": "train_step", "rc": 0, "seconds": 90, "timeout_s": 180})
    variants = {"eager_ce": {"median_ms_per_step": 300.0, "max_loss_diff_vs_eager": 0.0}}
    (tmp_path / "train_step.json").write_text(json.dumps({"variants": variants}))
    run = {"status": "ok", "val_bpb": 2.5, "artifact_bytes": 15_000_000, "headroom_bytes": 1_000_000}
    (tmp_path / "sandbox_train.json").write_text(json.dumps({"runs": {"fused_ce": run}}))
    (tmp_path / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    summary, lines = gpu_check_report.summarize(tmp_path, device)
    assert summary["ok"] and summary["train_step_ms"] == {"eager_ce": 300.0}
    assert summary["pytest_gpu"] == {"passed": 3, "skipped": 2, "deselected": 74}
    assert "NVIDIA H200" in lines[0] and any("15,000,000" in line for line in lines)
    steps.append({"step": "sandbox_train", "rc": 124, "seconds": 300, "timeout_s": 300})
    (tmp_path / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    summary, lines = gpu_check_report.summarize(tmp_path, device)
    assert not summary["ok"] and "FAILED" in lines[0]
