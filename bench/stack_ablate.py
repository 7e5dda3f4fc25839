"""Stack and ablate on the demo task: the best confirmed BPB after a fixed trial budget, with the two
operations on and off, over several campaign seeds (issue 15).

Each campaign is ``experiments/demo.toml`` (the real baseline on CPU, the embedded corpus, the replay
proposals) with its seed, its trial budget and the stack/ablate weights replaced, run to its budget in
this process. "on" takes the weights of ``--weights`` for stack and ablate; "off" sets both to 0 (the
other weights are the demo's). Reported per campaign: the best confirmed candidate's BPB on the explore
tier (the parent of record a person would take), how many stack and ablate trials ran, and the wall
time; then the mean over seeds per arm and the paired difference (on - off; negative: the operations
helped).

    python bench/stack_ablate.py --tiny --trials 8 --seeds 0          # plumbing check in seconds
    python bench/stack_ablate.py --trials 3 --seeds 0                 # the demo task, a few minutes
    python bench/stack_ablate.py --trials 20 --seeds 0 1 2 --out bench/results/stack_ablate.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from controller.config import CampaignConfig, load_campaign  # noqa: E402
from controller.search.loop import Controller  # noqa: E402
from controller.search.workspace import open_workspace  # noqa: E402
from controller.store.archive import Operation  # noqa: E402

DEMO = REPO_ROOT / "experiments" / "demo.toml"


def campaign(
    base: CampaignConfig, *, seed: int, trials: int, arm: str, weight: float, runs: Path
) -> CampaignConfig:
    """The demo campaign for one (seed, arm): its own name and run folder, no wall-clock cap."""
    section = base.campaign.model_copy(update={"name": f"bench-{arm}-{seed}", "seed": seed, "runs_dir": runs})
    on = weight if arm == "on" else 0.0
    return base.model_copy(
        update={
            "campaign": section,
            "budget": base.budget.model_copy(update={"max_trials": trials, "max_wall_hours": None}),
            "operations": base.operations.model_copy(update={"stack": on, "ablate": on}),
        }
    )


def tiny_campaign(folder: Path) -> CampaignConfig:
    """The unigram trainer (tests/programs) on tiny shards, knob proposals only: seconds per trial."""
    from datatools.prepare import build_dataset, shuffled_documents
    from tests.controller.campaigns import knob_line, write_campaign

    texts = [p.read_text(encoding="utf-8") for p in sorted((REPO_ROOT / "tests/data/corpus").glob("*.txt"))]
    data = build_dataset(shuffled_documents(texts), folder / "data", vocab_size=512, val_docs=8, name="tiny")
    replay = [knob_line("sharper", SMOOTHING=0.3), knob_line("wait less", SMOOTHING=0.4, SLEEP_SECONDS=0.01)]
    toml = write_campaign(
        folder,
        dataset_dir=data.dataset_dir,
        tokenizer_path=data.tokenizer_path,
        replay=replay,
        proxy={"seeds_to_confirm": 2, "min_delta_nats": 0.0, "p_value": 0.2},
        operations={"mutate": 1.0, "tune": 0.5, "hypothesis": 0.0, "confirm": 0.0},
    )
    return load_campaign(toml)


def run_one(config: CampaignConfig) -> dict:
    started = time.monotonic()
    with open_workspace(config, progress=False) as ws:
        controller = Controller(ws, say=lambda line: None)
        why = controller.run()
        archive = controller.state.archive
        record = archive.incumbent(config.search.explore_tier)
        operations = [t.attrs.operation for t in ws.study.trials()]
    return {
        "campaign": config.campaign.name,
        "stopped": why,
        "best_confirmed_bpb": record.val_bpb if record is not None else None,
        "best_confirmed_trial": record.trial if record is not None else None,
        "stack_trials": operations.count(Operation.STACK),
        "ablate_trials": operations.count(Operation.ABLATE),
        "trials": len(operations),
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20, help="trial budget of each campaign")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="campaign seeds")
    parser.add_argument("--weights", type=float, default=0.15, help="stack and ablate weight in the 'on' arm")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--tiny", action="store_true", help="the unigram test trainer on tiny data instead (plumbing check)"
    )
    args = parser.parse_args()

    runs: dict[str, list[dict]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="autogolf-bench-stack-") as tmp:
        base = tiny_campaign(Path(tmp)) if args.tiny else load_campaign(DEMO)
        for seed in args.seeds:
            for arm in ("off", "on"):
                config = campaign(
                    base, seed=seed, trials=args.trials, arm=arm, weight=args.weights, runs=Path(tmp)
                )
                result = run_one(config)
                runs[arm].append({"seed": seed, **result})
                print(json.dumps({"arm": arm, "seed": seed, **result}), flush=True)
    summary: dict[str, object] = {}
    for arm, results in runs.items():
        scores = [r["best_confirmed_bpb"] for r in results if r["best_confirmed_bpb"] is not None]
        summary[arm] = {
            "mean_best_confirmed_bpb": statistics.fmean(scores) if scores else None,
            "campaigns": len(results),
            "mean_wall_seconds": statistics.fmean(r["wall_seconds"] for r in results),
        }
    paired = [
        on["best_confirmed_bpb"] - off["best_confirmed_bpb"]
        for on, off in zip(runs["on"], runs["off"], strict=True)
        if on["best_confirmed_bpb"] is not None and off["best_confirmed_bpb"] is not None
    ]
    summary["paired_delta_bpb"] = paired  # on - off per seed; negative: stack/ablate helped
    report = {
        "bench": "stack_ablate",
        "task": "unigram trainer, tiny data (plumbing check)"
        if args.tiny
        else "experiments/demo.toml (baseline on CPU, embedded corpus, replay proposals)",
        "trials_per_campaign": args.trials,
        "stack_ablate_weight_on": args.weights,
        "machine": f"{platform.machine()} · {platform.processor() or platform.platform()}",
        "runs": runs,
        "summary": summary,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
