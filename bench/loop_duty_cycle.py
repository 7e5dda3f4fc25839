"""Duty cycle of the search loop: how much of the slots' time is spent inside runs.

The issue's setting: a near-zero-cost program (the unigram trainer sleeping ``--run-seconds``), a replay
proposer of knob-only lines slowed by an artificial LLM latency of ``--latency-fraction`` x a run's
duration, and ``--slots`` CPU slots. Reported:

- duty cycle = time inside ``sandbox.run`` summed over trials / (slots x wall time), over the whole
  campaign and over the steady state (from the first proposal's run to the end; the seed program's
  run is alone by design, since every other plan needs a scored parent);
- controller overhead per trial = the worker's time outside ``sandbox.run`` while it holds its slot
  (from taking the slot to freeing it: the ask and the program writing come before, see
  controller.search.slots), the time each step takes (ask, writing the program, git commit + note, study
  tell, frontier refs, whether or not a slot is held), and the slot time per trial spent outside runs.

Targets (issue 5): duty cycle >= 0.95, overhead < 0.5 s per trial.

    python bench/loop_duty_cycle.py                      # 16 trials, 2 s runs, 2 slots
    python bench/loop_duty_cycle.py --out bench/results/loop_duty_cycle.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from agent.proposers import ReplayProposer  # noqa: E402
from controller.store.archive import Operation  # noqa: E402
from tests.controller.campaigns import knob_line, write_campaign  # noqa: E402


class SlowReplay(ReplayProposer):
    """A replay proposer that takes as long as an LLM would: ``latency()`` seconds per proposal."""

    def __init__(self, inner: ReplayProposer, latency) -> None:
        super().__init__(inner.path, cursor_path=inner.cursor_path)
        self.latency = latency

    def propose(self, context, check_program):
        time.sleep(self.latency())
        return super().propose(context, check_program)


def build_data(folder: Path):
    from datatools.prepare import build_dataset, shuffled_documents

    texts = [p.read_text(encoding="utf-8") for p in sorted((REPO_ROOT / "tests/data/corpus").glob("*.txt"))]
    return build_dataset(shuffled_documents(texts), folder, vocab_size=512, val_docs=8, name="tiny")


def measure(trials: int, run_seconds: float, latency_fraction: float, slots: int, tmp: Path) -> dict:
    import controller.search.trial as trial_module
    from controller.config import load_campaign
    from controller.search.loop import Controller
    from controller.search.workspace import open_workspace

    data = build_data(tmp / "data")
    smoothings = [round(0.05 + 0.05 * i, 3) for i in range(trials)]
    toml = write_campaign(
        tmp / "campaign",
        dataset_dir=data.dataset_dir,
        tokenizer_path=data.tokenizer_path,
        replay=[knob_line(f"smoothing {s}", SMOOTHING=s) for s in smoothings],
        name="duty",
        max_trials=trials + 1,
        cpu_slots=slots,
        proxy_knobs={"SLEEP_SECONDS": run_seconds},
    )
    runs: list[tuple[float, float, int]] = []  # (start, end, thread) of every sandbox.run call
    executes: list[tuple[float, float, int]] = []  # (start, end, thread) of every worker's execute()
    slot_holds: list[tuple[float, float, int]] = []  # (slot taken, slot freed, thread) of every trial
    slot_waits: list[float] = []  # how long each worker waited in take_slot() (not overhead)
    lock = threading.Lock()
    real_run = trial_module.sandbox_run

    def timed_run(spec, on_event=None):
        started = time.monotonic()
        try:
            return real_run(spec, on_event)
        finally:
            with lock:
                runs.append((started, time.monotonic(), threading.get_ident()))

    def run_duration() -> float:
        with lock:
            done = [end - start for start, end, _ in runs]
        return statistics.median(done) if done else run_seconds

    # Where the worker's time outside the run goes: the steps of one trial, timed by name.
    import controller.search.loop as loop_module
    import controller.search.recorder as recorder_module

    steps: dict[str, list[float]] = {}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            started = time.monotonic()
            try:
                return function(*args, **kwargs)
            finally:
                with lock:
                    steps.setdefault(name, []).append(time.monotonic() - started)

        return wrapper

    patched = [
        (trial_module, "sandbox_run", timed_run),
        (loop_module, "prepare_program", timed("write program", loop_module.prepare_program)),
        (recorder_module, "record_candidate", timed("git record", recorder_module.record_candidate)),
        (recorder_module, "tell_study", timed("study tell", recorder_module.tell_study)),
    ]
    originals = [(module, name, getattr(module, name)) for module, name, _ in patched]
    for module, name, replacement in patched:
        setattr(module, name, replacement)
    try:
        with open_workspace(load_campaign(toml), progress=False) as ws:
            ws.study.ask = timed("study ask", ws.study.ask)
            ws.store.diff = timed("git diff (dashboard note)", ws.store.diff)
            ws.store.set_frontier = timed("git frontier refs", ws.store.set_frontier)
            slow = SlowReplay(ws.proposers[Operation.MUTATE], lambda: latency_fraction * run_duration())
            ws.proposers[Operation.MUTATE] = ws.proposers[Operation.HYPOTHESIS] = slow
            controller = Controller(ws, say=lambda line: None)
            real_execute = controller.execute

            def timed_execute(plan, take_slot, free_slot):
                # The slot is held from take_slot() until the worker frees it (after the run, before
                # recording); the ask and the program writing come before, while the slot runs another.
                started = time.monotonic()
                waiting: list[float] = []
                taken: list[float] = []
                freed: list[float] = []

                def timed_take():
                    waiting.append(time.monotonic())
                    gpus = take_slot()
                    taken.append(time.monotonic())
                    return gpus

                def timed_free() -> None:
                    if not freed:
                        freed.append(time.monotonic())
                    free_slot()

                try:
                    real_execute(plan, timed_take, timed_free)
                finally:
                    if taken:
                        with lock:
                            end = freed[0] if freed else time.monotonic()
                            slot_holds.append((taken[0], end, threading.get_ident()))
                            executes.append((started, time.monotonic(), threading.get_ident()))
                            slot_waits.append(taken[0] - waiting[0])  # paired with its execute

            controller.execute = timed_execute
            started = time.monotonic()
            why = controller.run()
            ended = time.monotonic()
            states = [t.state for t in ws.study.trials()]
    finally:
        for module, name, original in originals:
            setattr(module, name, original)

    inside = sum(end - start for start, end, _ in runs)
    runs.sort()
    # Steady state: from the first proposal's run until the last run starts (the budget is then spent,
    # so a slot that goes idle after that has nothing left to do; the seed's run is alone by design).
    steady_start = runs[1][0] if len(runs) > 1 else started
    steady_end = runs[-1][0]
    steady_inside = sum(max(0.0, min(end, steady_end) - max(start, steady_start)) for start, end, _ in runs)
    # After the fill: the seed run ends, then the producers (one per slot) make the first proposals,
    # so the slots wait about one LLM latency once. From the run that first fills every slot on:
    fill_end = runs[min(slots, len(runs) - 1)][0]
    filled_inside = sum(max(0.0, min(end, steady_end) - max(start, fill_end)) for start, end, _ in runs)

    def outside_runs(spans: list[tuple[float, float, int]]) -> list[float]:
        return [
            (end - start)
            - sum(
                r_end - r_start
                for r_start, r_end, r_thread in runs
                if r_thread == thread and start <= r_start <= end
            )
            for start, end, thread in spans
        ]

    # The worker's whole time outside the run and the slot wait (ask ... tell), and the part of it
    # spent holding the slot.
    worker_overheads = [t - w for t, w in zip(outside_runs(executes), slot_waits, strict=True)]
    in_slot_overheads = outside_runs(slot_holds)
    return {
        "stopped": why,
        "trials": len(states),
        "complete": states.count("COMPLETE"),
        "slots": slots,
        "run_seconds_median": run_duration(),
        "llm_latency_seconds": latency_fraction * run_duration(),
        "wall_seconds": ended - started,
        "duty_cycle": inside / (slots * (ended - started)),
        "duty_cycle_steady": steady_inside / (slots * (steady_end - steady_start)),
        "fill_seconds_after_seed": fill_end - steady_start,
        "duty_cycle_after_fill": filled_inside / (slots * max(1e-9, steady_end - fill_end)),
        "worker_overhead_median_s": statistics.median(worker_overheads),
        "worker_overhead_max_s": max(worker_overheads),
        "worker_overhead_holding_the_slot_median_s": statistics.median(in_slot_overheads),
        **{f"step {name} median_s": statistics.median(times) for name, times in sorted(steps.items())},
        "slot_idle_per_trial_s": (slots * (steady_end - steady_start) - steady_inside)
        / max(1, len(runs) - 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="proposals after the seed run")
    parser.add_argument("--run-seconds", type=float, default=2.0, help="SLEEP_SECONDS of every run")
    parser.add_argument("--latency-fraction", type=float, default=0.3, help="LLM latency / run duration")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autogolf-duty-") as tmp:
        numbers = measure(args.trials, args.run_seconds, args.latency_fraction, args.slots, Path(tmp))
    lines = [
        "loop duty cycle (bench/loop_duty_cycle.py)",
        f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs; "
        f"python {platform.python_version()}",
        f"settings: {args.trials} proposals + seed, runs sleep {args.run_seconds} s, "
        f"LLM latency {args.latency_fraction} x run, {args.slots} slots",
        *(
            f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}"
            for key, value in numbers.items()
        ),
        f"target duty cycle >= 0.95: steady {'met' if numbers['duty_cycle_steady'] >= 0.95 else 'MISSED'}, "
        f"after fill {'met' if numbers['duty_cycle_after_fill'] >= 0.95 else 'MISSED'}",
        f"target overhead < 0.5 s/trial (worker median): "
        f"{'met' if numbers['worker_overhead_median_s'] < 0.5 else 'MISSED'}",
    ]
    report = "\n".join(lines) + "\n"
    sys.stdout.write(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
