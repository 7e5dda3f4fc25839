"""What the integrity probes cost, and how large honest float noise is next to a look-ahead.

    python bench/integrity_cost.py --out bench/results/integrity_cost.json

1. Cost. Trains the seed program (a small model on CPU) on the demo corpus through ``sandbox.run`` with
   the full probe, then times the scored eval and both probes. Each eval's wall time is modelled as
   ``start-up + tokens * seconds_per_token``; the two unknowns come from the scored eval and the prefix
   probe (two stream lengths), and the model extrapolates to the challenge's 62,021,632 validation
   tokens. The start-up (interpreter, torch import, artifact load) is what a separate probe process
   pays again, so the fraction depends on how long an eval is: the report gives it for this CPU eval
   and for an eval whose compute takes as long as the challenge's (a GPU one is not measured here).
2. Noise. Scores the same stream in-process with two batch sizes, in fp32 and under bf16 autocast (the
   GPU's precision, emulated on the CPU), and reports how many NLL values differ and by how much: what
   kernel noise a tolerance must admit. Beside it, the look-ahead test program's change (from the test
   suite's ``looks_ahead`` program) for scale.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sandbox import DataPaths, Limits, RunSpec, RunStatus, run  # noqa: E402
from sandbox.spec import IntegritySettings, ProbeKind  # noqa: E402

CHALLENGE_VAL_TOKENS = 62_021_632
SMALL_MODEL = {
    "VOCAB_SIZE": "1024",
    "NUM_LAYERS": "4",
    "MODEL_DIM": "128",
    "NUM_HEADS": "4",
    "NUM_KV_HEADS": "2",
    "TRAIN_SEQ_LEN": "256",
    "EVAL_SEQ_LEN": "256",
    "TRAIN_BATCH_TOKENS": "8192",
    "VAL_BATCH_SIZE": "65536",
    "ITERATIONS": "150",
    "MAX_WALLCLOCK_SECONDS": "0",
    "WARMDOWN_ITERS": "50",
    "TRAIN_LOG_EVERY": "50",
    "COMPILE": "0",
}


def demo_data() -> DataPaths:
    from datatools.prepare import ensure_demo_data

    built = ensure_demo_data(progress=False)
    return DataPaths(dataset_dir=built.dataset_dir, tokenizer_path=built.tokenizer_path)


def measure_cost(data: DataPaths, work: Path) -> dict:
    program = work / "program"
    program.mkdir(parents=True)
    shutil.copy(REPO / "baseline" / "train_gpt.py", program / "train_gpt.py")
    spec = RunSpec(
        program_dir=program,
        knobs=SMALL_MODEL,
        data=data,
        out_dir=work / "out",
        eval_seq_len=256,
        limits=Limits(train_seconds=600, eval_seconds=600, startup_grace_seconds=120),
        integrity=IntegritySettings(probe=ProbeKind.FULL),
    )
    result = run(spec)
    if result.status is not RunStatus.OK:
        raise SystemExit(f"the benchmark run failed: {result.status} {result.reason}\n{result.error_excerpt}")
    prefix, full = result.probes
    scored_targets = full.probe_targets
    # Two lengths, two unknowns: eval seconds = start-up + targets * per-target seconds.
    per_target = (result.eval_seconds - prefix.probe_seconds) / (scored_targets - prefix.probe_targets)
    startup = result.eval_seconds - per_target * scored_targets
    settings = spec.integrity
    prefix_share = 0.75 * settings.prefix_fraction + settings.tail_tokens / CHALLENGE_VAL_TOKENS

    def fraction(eval_compute_seconds: float) -> float:
        """Prefix probe seconds over scored eval seconds at the challenge's size."""
        return (startup + prefix_share * eval_compute_seconds) / (startup + eval_compute_seconds)

    cpu_compute = per_target * CHALLENGE_VAL_TOKENS
    return {
        "val_bpb": result.val_bpb,
        "scored_targets": scored_targets,
        "scored_eval_seconds": result.eval_seconds,
        "prefix_probe": prefix.model_dump(),
        "full_probe": full.model_dump(),
        "fit": {"startup_seconds": startup, "seconds_per_target": per_target},
        "at_challenge_size": {
            "prefix_probe_targets": int(prefix_share * CHALLENGE_VAL_TOKENS),
            "prefix_share_of_targets": prefix_share,
            "cpu_eval_compute_seconds": cpu_compute,
            "prefix_probe_fraction_of_eval_cpu": fraction(cpu_compute),
            "prefix_probe_fraction_of_eval_if_compute_60s": fraction(60.0),
            "prefix_probe_fraction_of_eval_if_compute_600s": fraction(600.0),
            "full_probe_fraction_of_eval": 1.0,
        },
        "artifact_dir": str(work / "out" / "artifact"),
    }


def measure_noise(data: DataPaths, artifact_dir: Path, max_tokens: int = 65_537) -> dict:
    import torch

    from baseline import train_gpt as tg

    @dataclass(frozen=True)
    class Bf16Runtime(tg.Runtime):
        def autocast(self):
            return torch.autocast("cpu", dtype=torch.bfloat16)

    env = {**SMALL_MODEL, "DATA_PATH": str(data.dataset_dir), "TOKENIZER_PATH": str(data.tokenizer_path)}
    cfg = tg.read_settings(env)
    val, tables = tg.load_eval_inputs(cfg, "eval")
    val = val[:max_tokens]
    found = {}
    for name, runtime_class in (("fp32", tg.Runtime), ("bf16", Bf16Runtime)):
        rt = runtime_class(0, 1, 0, torch.device("cpu"))
        model = tg.load_model_from_artifact(cfg, rt, artifact_dir)
        nll = {}
        for batch in (65_536, 4_096):  # one batch of 256 windows vs 16 windows per batch
            cfg.val_batch_size = batch
            nll[batch] = tg.evaluate(model, val, cfg, rt, tables).nll.numpy().astype(np.float64)
        delta = nll[4_096] - nll[65_536]
        changed = np.abs(delta) > 1e-4 + 1e-4 * np.abs(nll[65_536])
        found[name] = {
            "targets": int(delta.size),
            "changed_over_1e-4": int(changed.sum()),
            "changed_fraction": float(changed.mean()),
            "max_abs_change": float(np.abs(delta).max()),
            "mean_change": float(delta.mean()),
            "std_change": float(delta.std()),
            "p99_abs_change": float(np.quantile(np.abs(delta), 0.99)),
        }
    return found


def measure_look_ahead(data: DataPaths, work: Path) -> dict:
    """The test suite's look-ahead program on the demo data: how much it changes before the cut."""
    from sandbox.spec import IntegrityCheck

    program = work / "lookahead"
    program.mkdir()
    shutil.copy(REPO / "tests" / "programs" / "unigram_trainer.py", program / "unigram_trainer.py")
    shutil.copy(REPO / "tests" / "sandbox" / "programs" / "looks_ahead.py", program / "train_gpt.py")
    found = {}
    for weight in ("0.2", "0.02"):
        result = run(
            RunSpec(
                program_dir=program,
                knobs={"LOOKAHEAD_WEIGHT": weight, "VOCAB_SIZE": "1024"},
                data=data,
                out_dir=work / f"lookahead-{weight}",
                eval_seq_len=256,
                limits=Limits(train_seconds=120, eval_seconds=120, startup_grace_seconds=60),
            )
        )
        found[f"weight_{weight}"] = {
            "status": str(result.status),
            "caught_by_causality": result.failed_check is IntegrityCheck.CAUSALITY,
            "reason": result.reason,
        }
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = parser.parse_args()
    import platform

    import torch

    data = demo_data()
    with tempfile.TemporaryDirectory(prefix="autogolf-integrity-bench-") as tmp:
        work = Path(tmp)
        started = time.monotonic()
        cost = measure_cost(data, work)
        noise = measure_noise(data, Path(cost.pop("artifact_dir")))
        look_ahead = measure_look_ahead(data, work)
    report = {
        "device": f"CPU only ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "model": SMALL_MODEL,
        "cost": cost,
        "noise_between_batch_sizes": noise,
        "look_ahead": look_ahead,
        "bench_seconds": time.monotonic() - started,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
