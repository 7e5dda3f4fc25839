"""Trials per minute with 1, 2 and 4 ``autogolf worker`` processes on one PostgreSQL study and one git remote.

Each point starts a fresh study (in a throwaway PostgreSQL server, see tests/controller/pg.py) and a
fresh bare repository, then N workers on a tune-only campaign of the unigram trainer
(tests/programs/unigram_trainer.py, ~0.1 s per run) with a shared budget of ``--trials`` trials. It
reports the throughput from the first worker's start to the last one's exit, and the coordination
overhead per finished trial from each worker's ``worker_stats.json``: seconds in the study
(storage) and seconds talking to the git remote (fetch, push, claims).

    python bench/workers_scaling.py --json bench/results/workers_scaling.json > bench/results/workers_scaling.txt

Needs root (or a user that can run PostgreSQL) and the Debian ``postgresql`` package.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datatools.prepare import build_dataset, shuffled_documents  # noqa: E402
from tests.controller.campaigns import write_campaign  # noqa: E402
from tests.controller.pg import postgres_server  # noqa: E402

TUNE_ONLY = {"mutate": 0.0, "tune": 1.0, "hypothesis": 0.0, "confirm": 0.0}


def one_point(folder: Path, data, url: str, workers: int, trials: int) -> dict:
    name = f"scale{workers}"
    toml = write_campaign(
        folder,
        dataset_dir=data.dataset_dir,
        tokenizer_path=data.tokenizer_path,
        name=name,
        max_trials=trials,
        operations=TUNE_ONLY,
        preflight_smoke=False,
        cpu_slots=1,
    )
    remote = folder / f"{name}.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "worker", str(toml), "--storage", url]
            + [
                "--git-remote",
                str(remote),
                "--name",
                f"w{i}",
                "--heartbeat-seconds",
                "2",
                "--grace-seconds",
                "20",
            ],
            cwd=ROOT,
            stdout=(folder / f"w{i}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for i in range(workers)
    ]
    codes = [p.wait(timeout=600) for p in procs]
    wall = time.perf_counter() - started
    stats = []
    for i in range(workers):
        path = folder / "runs" / "workers" / f"w{i}" / name / "worker_stats.json"
        if not path.exists():
            tail = (folder / f"w{i}.log").read_text()[-3000:]
            raise SystemExit(f"worker w{i} exited {codes[i]} without its stats; its output ends:\n{tail}")
        stats.append(json.loads(path.read_text()))
    finished = sum(s["trials_finished"] for s in stats)
    study = optuna.load_study(study_name=name, storage=url)
    runs = sum(1 for t in study.get_trials(deepcopy=False) if t.state is optuna.trial.TrialState.COMPLETE)
    return {
        "workers": workers,
        "exit_codes": codes,
        "trials": finished,
        "runs_complete": runs,
        "wall_seconds": round(wall, 2),
        "trials_per_minute": round(60 * runs / wall, 1),  # completed runs, not budget refusals
        "storage_seconds_per_trial": round(sum(s["storage_seconds"] for s in stats) / max(finished, 1), 3),
        "git_seconds_per_trial": round(sum(s["git_seconds"] for s in stats) / max(finished, 1), 3),
        "push_retries": sum(s["push_retries"] for s in stats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--trials", type=int, default=24, help="shared trial budget per point")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    corpus = [
        p.read_text(encoding="utf-8") for p in sorted((ROOT / "tests" / "data" / "corpus").glob("*.txt"))
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="autogolf-scale-") as tmp, postgres_server() as url:
        data = build_dataset(
            shuffled_documents(corpus), Path(tmp) / "data", vocab_size=512, val_docs=8, name="tiny"
        )
        for n in args.workers:
            rows.append(one_point(Path(tmp) / f"n{n}", data, url, n, args.trials))
    print(f"machine: {os.cpu_count()} CPUs; {args.trials} trials per point; unigram trainer, tune only")
    print("workers  trials  complete  wall s  trials/min  storage s/trial  git s/trial  push retries")
    for r in rows:
        print(
            f"{r['workers']:>7}  {r['trials']:>6}  {r['runs_complete']:>8}  {r['wall_seconds']:>6}"
            f"  {r['trials_per_minute']:>10}"
            f"  {r['storage_seconds_per_trial']:>15}  {r['git_seconds_per_trial']:>11}  {r['push_retries']:>12}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
