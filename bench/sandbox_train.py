"""Benchmark: the seed program at the official shape, run through the sandbox as a campaign runs it.

    python bench/sandbox_train.py --out bench/results/gpu_check/sandbox_train.json    # one CUDA GPU
    python bench/sandbox_train.py --tiny --out /tmp/sandbox_train.json               # CPU rehearsal

Builds a 1024-piece challenge-format dataset from tests/data/corpus (nothing is downloaded; the text is
tiny, so the scores only compare the two runs, they say nothing about FineWeb), takes a lease from a
GpuPool, and runs baseline/train_gpt.py through ``sandbox.run`` with the local backend: split phases,
the prefix integrity probe with the GPU tier's noise allowance, official-shape knobs, a step cap
instead of the 600 s cap. It does so twice, FUSED_CE=1 and FUSED_CE=0, with the same seed and steps,
and reports for each: status, the harness's val_bpb (post-roundtrip: the eval phase reads only the
artifact), artifact bytes (code + model) and headroom under 16,000,000, the compressor, steps, the
program's ms/step, whether the Triton kernel was active (the trainer's own log line) and wall time.
This prints numbers; it is not a timed test.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from datatools.prepare import build_dataset, shuffled_documents  # noqa: E402
from sandbox import ARTIFACT_LIMIT_BYTES, DataPaths, GpuPool, Limits, RunSpec, run  # noqa: E402
from sandbox.spec import IntegritySettings  # noqa: E402

TINY = {  # the rehearsal's CPU shape: the same plumbing in seconds
    "NUM_LAYERS": "2",
    "MODEL_DIM": "64",
    "NUM_HEADS": "2",
    "NUM_KV_HEADS": "1",
    "TRAIN_SEQ_LEN": "128",
    "TRAIN_BATCH_TOKENS": "2048",
    "VAL_BATCH_SIZE": "8192",
}
VARIANTS = {"fused_ce": "1", "eager_ce": "0"}
TAIL_TOKENS = 4096  # the corpus's validation split is small: a real prefix cut needs a short tail


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def save(numbers: dict, out: Path | None) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(numbers, indent=2))


def describe(name: str, r: dict) -> str:
    return (
        f"{name:<9} {r['status']:<9} kernel active {r['fused_ce_active']!s:<5} "
        f"val_bpb {_number(r['val_bpb'], '.5f')} bytes {_number(r['artifact_bytes'], ',')} "
        f"(headroom {_number(r['headroom_bytes'], ',')}, {r['compressor']}) steps {r['steps']} "
        f"ms/step {_number(r['ms_per_step'], '.1f')} wall {r['wall_seconds']:.0f}s"
    )


def build_data(folder: Path) -> DataPaths:
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "tests/data/corpus").glob("*.txt"))]
    built = build_dataset(shuffled_documents(texts), folder, vocab_size=1024, val_docs=8, name="corpus")
    return DataPaths(dataset_dir=built.dataset_dir, tokenizer_path=built.tokenizer_path)


def integrity(cuda: bool) -> IntegritySettings:
    """What a campaign's tier uses: exact agreement on the CPU, the kernel-noise allowance on a GPU."""
    if not cuda:
        return IntegritySettings(tail_tokens=TAIL_TOKENS)
    from controller.config import GPU_INTEGRITY

    return GPU_INTEGRITY.model_copy(update={"tail_tokens": TAIL_TOKENS})


def run_variant(name: str, knobs: dict[str, str], data: DataPaths, work: Path, args, pool: GpuPool) -> dict:
    program = work / "program"
    if not program.exists():
        program.mkdir()
        shutil.copy(ROOT / "baseline" / "train_gpt.py", program / "train_gpt.py")
    cuda = not args.tiny
    with pool.acquire(1) as lease:  # what a campaign's slot does: the run gets the leased GPU
        spec = RunSpec(
            program_dir=program,
            knobs=knobs,
            gpus=lease.gpus,
            data=data,
            limits=Limits(
                train_seconds=args.train_seconds,
                eval_seconds=args.eval_seconds,
                startup_grace_seconds=args.grace_seconds,
            ),
            out_dir=work / name,
            eval_seq_len=128 if args.tiny else 1024,
            integrity=integrity(cuda),
            label=f"bench/sandbox_train/{name}",
        )
        result = run(spec)
    log_file = work / name / "train.log"
    log = log_file.read_text(errors="replace") if log_file.is_file() else ""
    train_report = work / name / "train" / "result.json"
    report = json.loads(train_report.read_text()) if train_report.is_file() else {}
    fused = re.search(r"fused_ce (True|False)", log)
    art = result.artifact
    row = {
        "status": str(result.status),
        "reason": result.reason,
        "val_bpb": result.val_bpb,
        "claimed_bpb": result.claimed_bpb,
        "artifact_bytes": art.total if art else None,
        "code_bytes": art.code if art else None,
        "model_bytes": art.model if art else None,
        "headroom_bytes": ARTIFACT_LIMIT_BYTES - art.total if art else None,
        "compressor": report.get("compressor"),
        "fused_ce_active": fused.group(1) == "True" if fused else None,
        "steps": result.steps,
        "program_train_seconds": result.program_train_seconds,
        "ms_per_step": 1000.0 * result.program_train_seconds / result.steps
        if result.program_train_seconds and result.steps
        else None,
        "train_seconds": result.train_seconds,
        # start-up, compile warm-up and export: untimed by the program, inside Limits.startup_grace_seconds
        "train_phase_overhead_seconds": result.train_seconds - result.program_train_seconds
        if result.train_seconds is not None and result.program_train_seconds is not None
        else None,
        "eval_seconds": result.eval_seconds,
        "wall_seconds": result.wall_seconds,
        "probes": [p.model_dump(mode="json") for p in result.probes],
        "error_excerpt": result.error_excerpt[-2000:],
    }
    if args.keep:
        row["run_dir"] = str(work / name)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="CPU rehearsal at a tiny shape")
    parser.add_argument("--steps", type=int, default=100, help="ITERATIONS of each run (default 100)")
    parser.add_argument("--train-seconds", type=float, default=240.0, help="harness train-phase limit")
    parser.add_argument("--eval-seconds", type=float, default=120.0, help="harness eval-phase limit")
    parser.add_argument("--grace-seconds", type=float, default=240.0, help="start-up and compile grace")
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    parser.add_argument("--keep", type=Path, help="keep the run folders under this folder")
    parser.add_argument(
        "--budget-seconds", type=float, help="skip the eager run when less time is left than a run took"
    )
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        sys.exit("no CUDA device: the official-shape run needs a GPU (--tiny is a CPU rehearsal)")
    device = torch.cuda.get_device_name() if cuda and not args.tiny else "cpu"
    base = {
        "ITERATIONS": str(args.steps),
        "MAX_WALLCLOCK_SECONDS": "0",
        "WARMDOWN_ITERS": str(max(1, args.steps // 3)),
        "TRAIN_LOG_EVERY": "10",
        **(TINY if args.tiny else {}),
    }
    pool = GpuPool.cpu(1) if args.tiny else GpuPool([0])
    numbers = {
        "device": device,
        "torch": torch.__version__,
        "shape": "tiny CPU rehearsal" if args.tiny else "official (9x512, vocab 1024, 524,288 tok/step)",
        "knobs": base,
        "data": "tests/data/corpus, 1024-piece tokenizer, val = first 8 documents",
        "runs": {},
        "skipped": [],
    }
    started = time.monotonic()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sandbox-train-", dir=args.keep))
    try:
        data = build_data(work / "data")
        for name, fused in VARIANTS.items():
            runs = numbers["runs"]
            left = args.budget_seconds - (time.monotonic() - started) if args.budget_seconds else None
            if runs and left is not None and left < 1.2 * max(r["wall_seconds"] for r in runs.values()):
                numbers["skipped"].append(f"{name}: {left:.0f} s of --budget-seconds left, less than a run")
                break
            runs[name] = r = run_variant(name, {**base, "FUSED_CE": fused}, data, work, args, pool)
            print(describe(name, r), flush=True)
            both = [runs[n]["val_bpb"] for n in VARIANTS if n in runs]
            numbers["val_bpb_fused_minus_eager"] = (
                both[0] - both[1] if len(both) == 2 and None not in both else None
            )
            numbers["ok"] = all(r["status"] == "ok" for r in runs.values())
            save(numbers, args.out)  # after every run: a step killed by its timeout keeps what it measured
        save(numbers, args.out)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if numbers.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
