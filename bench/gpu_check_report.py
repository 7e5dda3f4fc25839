"""The device check's bookkeeping (bench/gpu_check.sh): what machine it runs on, and one summary.

    python bench/gpu_check_report.py device                          # prints the device
    python bench/gpu_check_report.py summary --out DIR [--rehearse 1] # writes DIR/summary.{json,txt}

``summary`` reads the steps' files in DIR (steps.jsonl, pytest_gpu.log, train_step.json,
sandbox_train.json), adds the device (nvidia-smi's name, torch, triton, compressors), and exits 1 when a
step failed or left no result, so the script's status says it. The check writes eight files in all:
what a device run brings back from $OUT.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REFERENCE_MS_PER_STEP = 350.0  # the official script on one H100 (CHALLENGE.md)
TARGET_MS_PER_STEP = 280.0
RUN_FIELDS = (
    "status",
    "val_bpb",
    "artifact_bytes",
    "headroom_bytes",
    "compressor",
    "fused_ce_active",
    "steps",
    "ms_per_step",
    "train_phase_overhead_seconds",
)


def _command(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def describe_device(rehearse: bool) -> dict:
    import torch

    from baseline import train_gpt as tg

    smi = _command(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
    cuda = torch.cuda.is_available()
    return {
        "device": (smi.split(",")[0].strip() if smi else None) or ("cpu" if not cuda else None),
        "nvidia_smi": smi,
        "rehearse": rehearse,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_device": torch.cuda.get_device_name() if cuda else None,
        "triton": getattr(tg.triton, "__version__", None),
        "compressors": sorted(tg._compressors()),
        "python": platform.python_version(),
        "commit": _command(["git", "-C", str(ROOT), "rev-parse", "HEAD"]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pytest_counts(path: Path) -> dict | None:
    """pytest's closing line, e.g. "3 passed, 2 skipped, 74 deselected in 61.2s", as counts."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return None
    found = re.findall(
        r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", lines[-1] if lines else ""
    )
    return {word: int(n) for n, word in found} or None


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summarize(out: Path, device: dict) -> tuple[dict, list[str]]:
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()]
    pytest_counts = _pytest_counts(out / "pytest_gpu.log")
    train_step = _read_json(out / "train_step.json")
    variants = (train_step or {}).get("variants", {})
    sandbox = _read_json(out / "sandbox_train.json")
    ok = bool(steps) and all(s["rc"] == 0 for s in steps) and None not in (train_step, sandbox)
    summary = {
        "ok": ok,
        "device": device,
        "steps": steps,
        "pytest_gpu": pytest_counts,
        "train_step_ms": {name: v["median_ms_per_step"] for name, v in variants.items()},
        "train_step_max_loss_diff": {name: v.get("max_loss_diff_vs_eager") for name, v in variants.items()},
        "reference_ms_per_step_h100": REFERENCE_MS_PER_STEP,
        "target_ms_per_step": TARGET_MS_PER_STEP,
        "sandbox_runs": {
            name: {k: r.get(k) for k in RUN_FIELDS} for name, r in (sandbox or {}).get("runs", {}).items()
        },
        "sandbox_skipped": (sandbox or {}).get("skipped", []),
        "val_bpb_fused_minus_eager": (sandbox or {}).get("val_bpb_fused_minus_eager"),
    }
    where = device.get("device") or "unknown device"
    lines = [
        f"gpu_check on {where}{' (CPU rehearsal, tiny shapes)' if device.get('rehearse') else ''}: "
        f"{'ok' if ok else 'FAILED'} | torch {device.get('torch')} | triton {device.get('triton')} | "
        f"compressors {','.join(device.get('compressors', []))} | {device.get('date')}",
    ]
    for s in steps:
        lines.append(f"  {s['step']:<14} rc {s['rc']:>3} in {s['seconds']:>4}s (timeout {s['timeout_s']}s)")
    if pytest_counts:
        lines.append("  pytest -m gpu: " + ", ".join(f"{v} {k}" for k, v in pytest_counts.items()))
    for name, ms in summary["train_step_ms"].items():
        diff = summary["train_step_max_loss_diff"].get(name)
        lines.append(
            f"  train_step {name:<9} {ms:9.1f} ms/step (target <= {TARGET_MS_PER_STEP:.0f}, official ~"
            f"{REFERENCE_MS_PER_STEP:.0f} on one H100) max |dloss| vs eager {_number(diff, '.2e')}"
        )
    for name, r in summary["sandbox_runs"].items():
        lines.append(
            f"  sandbox {name:<9} {r['status']:<9} kernel active {r['fused_ce_active']!s:<5} "
            f"val_bpb {_number(r['val_bpb'], '.5f')} bytes {_number(r['artifact_bytes'], ',')} "
            f"(headroom {_number(r['headroom_bytes'], ',')}, {r['compressor']}) steps {r['steps']} "
            f"ms/step {_number(r['ms_per_step'], '.1f')} untimed train-phase overhead "
            f"{_number(r['train_phase_overhead_seconds'], '.0f')}s"
        )
    lines += [f"  sandbox skipped {why}" for why in summary["sandbox_skipped"]]
    return summary, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("device", "summary"))
    parser.add_argument("--out", type=Path, help="the check's results folder (summary)")
    parser.add_argument("--rehearse", default="0", help="1 when the steps run on the CPU")
    args = parser.parse_args()
    info = describe_device(args.rehearse == "1")
    if args.what == "device":
        print(f"device: {info['device']} | torch {info['torch']} | compressors {info['compressors']}")
        return 0
    if args.out is None:
        parser.error("summary needs --out")
    summary, lines = summarize(args.out, info)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    (args.out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
