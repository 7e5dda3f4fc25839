"""The seed trainer run as the sandbox runs it: a subprocess per phase, on CPU, on the tiny dataset."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from baseline import train_gpt as tg

TRAIN_GPT = Path(tg.__file__)
TINY_RUN = {
    "VOCAB_SIZE": "512",
    "NUM_LAYERS": "2",
    "MODEL_DIM": "64",
    "NUM_HEADS": "2",
    "NUM_KV_HEADS": "1",
    "TRAIN_SEQ_LEN": "128",
    "EVAL_SEQ_LEN": "128",
    "TRAIN_BATCH_TOKENS": "2048",
    "ITERATIONS": "100",
    "MAX_WALLCLOCK_SECONDS": "0",
    "WARMDOWN_ITERS": "30",
    "TRAIN_LOG_EVERY": "10",
}


def run_phase(tmp_env: dict[str, str], nproc: int = 1, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLF_")}
    env.update(TINY_RUN)
    env.update(tmp_env)
    if nproc == 1:
        cmd = [sys.executable, str(TRAIN_GPT)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        cmd.append(str(TRAIN_GPT))
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def split_data(tiny_data, tmp_path_factory):
    """Two data folders as the sandbox mounts them: one with only train shards, one with only val."""
    root = tmp_path_factory.mktemp("split")
    folders = {}
    for split in ("train", "val"):
        folder = root / f"{split}_only"
        folder.mkdir()
        for shard in Path(tiny_data.dataset_dir).glob(f"fineweb_{split}_*.bin"):
            (folder / shard.name).symlink_to(shard)
        folders[split] = folder
    return folders


@pytest.fixture(scope="module")
def all_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("all_run")
    positions = np.array([0, 5, 1000, 5, 12_000, 25_000], dtype="<i8")
    positions.tofile(out / "positions.i64")
    proc = run_phase(
        {
            "DATA_PATH": str(tiny_data.dataset_dir),
            "TOKENIZER_PATH": str(tiny_data.tokenizer_path),
            "GOLF_OUT": str(out),
            "GOLF_CHECK_POSITIONS": str(out / "positions.i64"),
        }
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, positions, proc


def val_tokens(tiny_data) -> np.ndarray:
    return np.concatenate(
        [tg.read_shard(p) for p in sorted(Path(tiny_data.dataset_dir).glob("fineweb_val_*"))]
    )


def unigram_bpb(tiny_data, n: int, scored_bytes: int) -> float:
    train = np.concatenate([tg.read_shard(p) for p in Path(tiny_data.dataset_dir).glob("fineweb_train_*")])
    p = np.bincount(train, minlength=512) / train.size
    entropy_nats = -float((p[p > 0] * np.log(p[p > 0])).sum())
    return entropy_nats * n / math.log(2) / scored_bytes


@pytest.mark.slow
def test_all_phase_writes_the_contract_outputs_and_beats_the_unigram_baseline(all_run, tiny_data):
    out, _, proc = all_run
    result = json.loads((out / "result.json").read_text())
    for key in ("val_bpb", "val_loss", "bytes_code", "bytes_model", "train_seconds", "eval_seconds", "steps"):
        assert result[key] is not None and math.isfinite(result[key]), key
    assert result["eval_seq_len"] == 128 and result["vocab_size"] == 512 and result["steps"] == 100
    val = val_tokens(tiny_data)
    n = ((val.size - 1) // 128) * 128
    nll = np.fromfile(out / "val_nll.f32", dtype="<f4")
    assert nll.shape == (n,) and np.isfinite(nll).all() and (nll >= 0).all()
    # the harness's recomputation from the NLL file agrees with the program's claim
    sp = spm.SentencePieceProcessor(model_file=str(tiny_data.tokenizer_path))
    scored_bytes = int(tg.build_byte_tables(sp, 512).target_bytes(val[:n], val[1 : n + 1]).sum())
    bpb = float(nll.astype(np.float64).sum()) / math.log(2) / scored_bytes
    assert bpb == pytest.approx(result["val_bpb"], rel=1e-5)
    assert bpb < unigram_bpb(tiny_data, n, scored_bytes) - 0.3
    # the artifact folder holds only the compressed model, and its size is what result.json says
    files = list((out / "artifact").iterdir())
    assert len(files) == 1 and files[0].name.startswith("model.")
    assert files[0].stat().st_size == result["bytes_model"]
    assert result["bytes_code"] == TRAIN_GPT.stat().st_size
    # the loss curve: one flushed line per logged step, loss falling
    curve = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()]
    assert [c["step"] for c in curve][-1] == 100 and curve[-1]["train_loss"] < curve[0]["train_loss"] - 1.0
    assert all(set(c) == {"step", "train_loss", "elapsed_ms"} for c in curve)
    assert "step:100/100 train_loss:" in proc.stdout and "tok/s:" in proc.stdout


def test_check_rows_are_full_normalized_rows_matching_the_nll(all_run, tiny_data):
    out, positions, _ = all_run
    rows = np.fromfile(out / "check_rows.f32", dtype="<f4").reshape(len(positions), 512)
    nll = np.fromfile(out / "val_nll.f32", dtype="<f4")
    val = val_tokens(tiny_data)
    lse = np.log(np.exp(rows.astype(np.float64)).sum(axis=1))
    assert np.allclose(lse, 0.0, atol=1e-4)
    assert np.allclose(-rows[np.arange(len(positions)), val[positions + 1]], nll[positions], rtol=1e-3)
    assert np.array_equal(rows[1], rows[3])  # a repeated position repeats its row


@pytest.mark.slow
def test_train_without_val_files_then_eval_without_train_files(split_data, tiny_data, tmp_path):
    common = {"TOKENIZER_PATH": str(tiny_data.tokenizer_path), "GOLF_OUT": str(tmp_path), "ITERATIONS": "5"}
    train = run_phase({**common, "DATA_PATH": str(split_data["train"]), "GOLF_PHASE": "train"})
    assert train.returncode == 0, train.stderr[-3000:]
    assert len(list((tmp_path / "artifact").glob("model.*"))) == 1
    assert (tmp_path / "curve.jsonl").is_file() and not (tmp_path / "val_nll.f32").exists()
    # the train phase reports its own timer and step count in result.json, where the sandbox reads them
    train_report = json.loads((tmp_path / "result.json").read_text())
    assert train_report["phase"] == "train" and train_report["steps"] == 5
    assert 0 < train_report["train_seconds"] < 120 and "val_bpb" not in train_report
    # eval reads the artifact from its own folder, scores with sliding windows, and knows nothing of train data
    eval_ = run_phase(
        {
            **common,
            "DATA_PATH": str(split_data["val"]),
            "GOLF_PHASE": "eval",
            "GOLF_ARTIFACT_DIR": str(tmp_path / "artifact"),
            "EVAL_STRIDE": "64",
        }
    )
    assert eval_.returncode == 0, eval_.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    n = ((val_tokens(tiny_data).size - 1) // 128) * 128
    assert np.fromfile(tmp_path / "val_nll.f32", dtype="<f4").shape == (n,)
    assert result["steps"] == 5 and result["eval_stride"] == 64 and math.isfinite(result["val_bpb"])
    assert result["phase"] == "eval" and result["train_seconds"] == train_report["train_seconds"]


@pytest.mark.slow
def test_sandbox_split_run_of_the_baseline_reports_the_train_phases_timer_and_steps(tiny_data, tmp_path):
    from sandbox import DataPaths, Limits, RunSpec, RunStatus, run
    from sandbox.spec import IntegritySettings, ProbeKind

    program = tmp_path / "program"
    program.mkdir()
    shutil.copy(TRAIN_GPT, program / "train_gpt.py")
    spec = RunSpec(
        program_dir=program,
        knobs={**TINY_RUN, "ITERATIONS": "5"},
        phases="split",
        data=DataPaths(dataset_dir=tiny_data.dataset_dir, tokenizer_path=tiny_data.tokenizer_path),
        # generous: importing torch on a loaded 2-core machine can take many seconds per phase
        limits=Limits(train_seconds=120, eval_seconds=120, startup_grace_seconds=60),
        out_dir=tmp_path / "out",
        eval_seq_len=128,
        integrity=IntegritySettings(probe=ProbeKind.FULL, rows=4, tail_tokens=1024),
    )
    result = run(spec)
    assert result.status is RunStatus.OK, (result.reason, result.error_excerpt)
    assert result.steps == 5 and result.val_bpb is not None and math.isfinite(result.val_bpb)
    train_report = json.loads((tmp_path / "out" / "train" / "result.json").read_text())
    assert result.program_train_seconds == pytest.approx(train_report["train_seconds"])
    assert 0 < result.program_train_seconds <= result.train_seconds
    # The real trainer is causal and scores from its artifact alone: both probes agree to the bit.
    assert [(p.probe, p.changed, p.max_abs_change) for p in result.probes] == [
        (ProbeKind.PREFIX, 0, 0.0),
        (ProbeKind.FULL, 0, 0.0),
    ]


@pytest.mark.slow
def test_a_phase_missing_its_data_exits_nonzero_naming_the_files(split_data, tiny_data, tmp_path):
    proc = run_phase(
        {
            "DATA_PATH": str(split_data["val"]),
            "TOKENIZER_PATH": str(tiny_data.tokenizer_path),
            "GOLF_OUT": str(tmp_path),
            "GOLF_PHASE": "train",
        }
    )
    assert proc.returncode == 2
    assert "train phase needs fineweb_train_*.bin" in proc.stderr and str(split_data["val"]) in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("phase", "split", "expected"),
    [
        ("eval", "train", "eval phase needs fineweb_val_*.bin"),
        ("all", "train", "all phase needs fineweb_val_*.bin"),  # before any training is spent
        ("eval", "both", "needs exactly one model.* file"),
    ],
)
def test_phases_fail_clearly_when_the_other_phases_data_is_all_there_is(
    monkeypatch, split_data, tiny_data, tmp_path, phase, split, expected
):
    data = tiny_data.dataset_dir if split == "both" else split_data[split]
    for key, value in TINY_RUN.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DATA_PATH", str(data))
    monkeypatch.setenv("TOKENIZER_PATH", str(tiny_data.tokenizer_path))
    monkeypatch.setenv("GOLF_PHASE", phase)
    monkeypatch.setenv("GOLF_OUT", str(tmp_path))
    monkeypatch.delenv("GOLF_ARTIFACT_DIR", raising=False)
    monkeypatch.delenv("GOLF_CHECK_POSITIONS", raising=False)
    if phase == "eval" and split != "both":
        tiny = tg.read_settings(dict(os.environ))
        tg.write_artifact(tg.build_model(tiny, tg.torch.device("cpu")), tiny, tmp_path / "artifact")
    with pytest.raises(tg.SettingError, match=expected.replace("*", r"\*").replace(".", r"\.")):
        tg.main()
    assert not (tmp_path / "curve.jsonl").exists()


@pytest.mark.slow
def test_torchrun_on_cpu_gathers_the_same_nll_as_one_process(all_run, tiny_data, tmp_path):
    out, _, _ = all_run
    common = {"DATA_PATH": str(tiny_data.dataset_dir), "TOKENIZER_PATH": str(tiny_data.tokenizer_path)}
    # two ranks evaluating the one-process artifact reproduce its NLL file exactly (gather to rank 0)
    two = run_phase(
        {
            **common,
            "GOLF_PHASE": "eval",
            "GOLF_OUT": str(tmp_path),
            "GOLF_ARTIFACT_DIR": str(out / "artifact"),
        },
        nproc=2,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one_nll = np.fromfile(out / "val_nll.f32", dtype="<f4")
    two_nll = np.fromfile(tmp_path / "val_nll.f32", dtype="<f4")
    assert two_nll.shape == one_nll.shape and np.allclose(two_nll, one_nll, rtol=1e-4, atol=1e-5)
    # and two ranks can train too (gloo all-reduce of gradients and Muon updates)
    train_out = tmp_path / "train2"
    trained = run_phase({**common, "GOLF_OUT": str(train_out), "ITERATIONS": "10"}, nproc=2)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert np.fromfile(train_out / "val_nll.f32", dtype="<f4").shape == one_nll.shape
    assert json.loads((train_out / "result.json").read_text())["world_size"] == 2


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not tg.torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_run_with_compile_bf16_and_fused_ce_honours_the_contract(tiny_data, tmp_path):
    np.array([0, 777, 20_000], dtype="<i8").tofile(tmp_path / "positions.i64")
    proc = run_phase(
        {
            "DATA_PATH": str(tiny_data.dataset_dir),
            "TOKENIZER_PATH": str(tiny_data.tokenizer_path),
            "GOLF_OUT": str(tmp_path),
            "GOLF_CHECK_POSITIONS": str(tmp_path / "positions.i64"),
            "COMPILE": "1",
            "FUSED_CE": "1",
            "WARMUP_STEPS": "3",
            "EVAL_STRIDE": "64",
        },
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "compile warm-up: 3 steps" in proc.stdout
    assert ("fused_ce True" in proc.stdout) == (tg.triton is not None)
    result = json.loads((tmp_path / "result.json").read_text())
    val = val_tokens(tiny_data)
    n = ((val.size - 1) // 128) * 128
    nll = np.fromfile(tmp_path / "val_nll.f32", dtype="<f4")
    assert nll.shape == (n,) and np.isfinite(nll).all()
    sp = spm.SentencePieceProcessor(model_file=str(tiny_data.tokenizer_path))
    scored_bytes = int(tg.build_byte_tables(sp, 512).target_bytes(val[:n], val[1 : n + 1]).sum())
    assert result["val_bpb"] < unigram_bpb(tiny_data, n, scored_bytes) - 0.3
    rows = np.fromfile(tmp_path / "check_rows.f32", dtype="<f4").reshape(3, 512)
    assert np.allclose(np.log(np.exp(rows.astype(np.float64)).sum(axis=1)), 0.0, atol=1e-4)
    assert np.allclose(-rows[np.arange(3), val[[1, 778, 20_001]]], nll[[0, 777, 20_000]], rtol=1e-3)
