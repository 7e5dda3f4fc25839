"""Wall time the sandbox adds around a program, per backend (targets: < 1 s local, < 3 s docker).

For each backend, ``sandbox.run`` is timed around a program that does nothing (both phase plans), and
``sandbox.preflight`` around the honest unigram trainer; the same programs run as bare
``python script.py`` give the baseline that is subtracted. For the local backend one phase alone is
timed too (``LocalBackend.execute`` of the empty program): the fixed cost each phase pays. Medians over
``--repeats``.

Backends: ``local`` (as probed: confined by bwrap wherever it works), ``local-unconfined`` (the same
containment without bwrap, as on a machine without it; preflight always uses the probed local backend,
so it is not measured there) and ``docker``. Each result names the mode it was measured in.

    python bench/sandbox_overhead.py                         # local, confined and unconfined
    python bench/sandbox_overhead.py --backend local local-unconfined docker --docker-image autogolf-test:latest
    python bench/sandbox_overhead.py --json bench/results/sandbox_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datatools.prepare import build_dataset, shuffled_documents  # noqa: E402
from sandbox import DataPaths, HarnessError, Limits, RunSpec, preflight, run  # noqa: E402
from sandbox.backends.base import Backend  # noqa: E402
from sandbox.backends.containment import Containment, probe_containment  # noqa: E402
from sandbox.backends.local import LocalBackend, measure_noop_seconds  # noqa: E402

NOOP_PROGRAM = "KNOBS = []\n"
UNIGRAM_TRAINER = ROOT / "tests" / "programs" / "unigram_trainer.py"
TARGET_SECONDS = {"local": 1.0, "local-unconfined": 1.0, "docker": 3.0}


def median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bare_python(script: Path, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, str(script)], env={**os.environ, **env}, check=True, capture_output=True)


def local_backend(name: str) -> LocalBackend:
    """``local`` as probed; ``local-unconfined`` the probed containment without bwrap."""
    probed = probe_containment()
    if name == "local":
        return LocalBackend(probed)
    return LocalBackend(Containment(unshare_prefix=probed.unshare_prefix, cgroups=probed.cgroups))


def measure(name: str, image: str, data: DataPaths, work: Path, repeats: int) -> dict[str, object]:
    backend = "docker" if name == "docker" else "local"
    local = local_backend(name) if backend == "local" else None
    instance: Backend | None = local
    noop = work / f"noop-{name}"
    noop.mkdir()
    (noop / "train_gpt.py").write_text(NOOP_PROGRAM)
    trainer = work / f"trainer-{name}"
    trainer.mkdir()
    shutil.copy(UNIGRAM_TRAINER, trainer / "train_gpt.py")
    limits = Limits(train_seconds=60, eval_seconds=60, startup_grace_seconds=30)

    def sandboxed(phases: str) -> None:
        spec = RunSpec(
            program_dir=noop,
            phases=phases,
            data=data,
            limits=limits,
            out_dir=work / f"out-{name}-{phases}",
            backend=backend,
            docker_image=image,
        )
        # Status is "invalid" (no outputs): only the time around the program counts here.
        run(spec, backend=instance)

    bare_noop = median_seconds(lambda: bare_python(noop / "train_gpt.py", {}), repeats)
    split = median_seconds(lambda: sandboxed("split"), repeats)
    all_phases = median_seconds(lambda: sandboxed("all"), repeats)
    trainer_env = {"DATA_PATH": str(data.dataset_dir), "GOLF_OUT": str(work / f"bare-{name}")}
    bare_trainer = median_seconds(lambda: bare_python(trainer / "train_gpt.py", trainer_env), repeats)
    numbers: dict[str, object] = {"mode": local.containment.describe() if local else "docker"}
    if local is not None:
        phase = measure_noop_seconds(repeats=repeats, backend=local)
        numbers |= {"phase_noop_seconds": phase, "overhead_phase_seconds": phase - bare_noop}
    numbers |= {
        "bare_noop_seconds": bare_noop,
        "run_split_seconds": split,
        "run_all_seconds": all_phases,
        "overhead_split_seconds": split - 2 * bare_noop,
        "overhead_all_seconds": all_phases - bare_noop,
        "bare_trainer_seconds": bare_trainer,
    }
    if name != "local-unconfined":  # preflight runs the probed local backend: measured under "local"
        smoke = median_seconds(
            lambda: preflight(trainer, data=data, smoke_knobs={}, backend=backend, docker_image=image),
            repeats,
        )
        numbers |= {"preflight_seconds": smoke, "overhead_preflight_seconds": smoke - bare_trainer}
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backend",
        nargs="+",
        default=["local", "local-unconfined"],
        choices=["local", "local-unconfined", "docker"],
    )
    parser.add_argument("--docker-image", default="autogolf-trainer:latest")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="autogolf-bench-") as tmp:
        work = Path(tmp)
        texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "tests/data/corpus").glob("*.txt"))]
        built = build_dataset(
            shuffled_documents(texts), work / "data", vocab_size=512, val_docs=8, name="bench"
        )
        data = DataPaths(dataset_dir=built.dataset_dir, tokenizer_path=built.tokenizer_path)
        results: dict[str, dict] = {}
        for backend in args.backend:
            try:
                results[backend] = measure(backend, args.docker_image, data, work, args.repeats)
            except HarnessError as exc:  # e.g. no Docker engine: report it, measure the rest
                results[backend] = {"unavailable": str(exc)}
        if "local" in results and "confined" not in str(results["local"].get("mode", "")):
            results["local"] = {"unavailable": "the local backend is unconfined here (no working bwrap)"}

    for backend, numbers in results.items():
        if "unavailable" in numbers:
            print(f"{backend}: not measured: {numbers['unavailable']}")
            continue
        target = TARGET_SECONDS[backend]
        print(f"{backend}: (median of {args.repeats}; target overhead < {target:.0f} s per run)")
        for name, value in numbers.items():
            if isinstance(value, str):
                print(f"  {name:28s} {value}")
                continue
            flag = ""
            if name in ("overhead_split_seconds", "overhead_all_seconds"):
                flag = "  ok" if value < target else "  OVER TARGET"
            print(f"  {name:28s} {value:8.3f}{flag}")
    if args.json:
        meta = {
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "repeats": args.repeats,
            "modes": "each result's 'mode' is the containment it ran under (Containment.describe): "
            "local = as probed (confined by bwrap where it works), local-unconfined = the same "
            "without bwrap; overhead_phase_seconds = one LocalBackend.execute of an empty program "
            "minus bare python",
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
