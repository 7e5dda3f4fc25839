"""The unattended search loop: plan trials, keep the slots busy, record every result, stop cleanly.

Threads: the main thread schedules (takes a plan, waits for the staging place, starts a worker); one
producer thread per slot prepares proposals ahead (the LLM is slow, so the next proposals are ready
before a slot frees up); one worker thread per trial, which asks the study and writes the program
before it waits for a slot (controller.search.slots). Every write to the study, the git store and the archive
happens under one lock, in the order described in controller.search.trial.

Ctrl-C once: no new trials; running ones finish and are recorded, and a trial staged for the next
free slot is failed and re-queued (the next start runs it first). Twice: running ones are killed and
recorded as failed. Running the same command again resumes (see :meth:`Controller.resume`).
"""

from __future__ import annotations

import logging
import queue
import random
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from agent.proposal import Outcome
from controller.search.confirm import ConfirmBook, judge_integrity
from controller.search.inert import ParentBehaviour
from controller.search.planning import Planning
from controller.search.prepared import load_prepared, requeued_plan, save_prepared
from controller.search.requests import request_attrs
from controller.search.slots import SlotGate
from controller.search.trial import (
    TrialPlan,
    candidate_attr,
    child_source,
    confirm_attrs,
    knob_overrides,
    note_extra_seed,
    plausibility_for,
    prepare_program,
    program_knobs,
    record_candidate,
    run_plan,
    tell_from_note,
    tell_study,
)
from controller.search.workspace import Workspace
from controller.store.archive import Archive, Operation
from controller.store.records import (
    ATTR_DISCREDITS,
    ATTR_PROMOTED,
    ATTR_PROMOTES,
    rebuild_archive,
    with_confirmed,
    with_extra_seed,
)
from controller.store.study import ATTR_GAVE_UP, ATTR_REQUEUED_FROM, TrialHandle, budget_trials
from sandbox import GpuPool, RunResult, RunStatus, StopRequest

log = logging.getLogger(__name__)

QUEUE_AHEAD = 2  # proposals prepared ahead of free slots


class Peers:
    """Hooks for workers sharing one study and one git remote (controller.workers.worker); no-ops alone."""

    shared = False

    def before_plan(self, ws: Workspace) -> None:
        """Bring the local git store up to date with the shared remote."""

    def after_record(self, ws: Workspace) -> None:
        """Publish newly recorded candidates, notes and frontier moves to the shared remote."""

    def set_aside(self, ws: Workspace, number: int) -> None:
        """Trial ``number`` is about to be re-queued without having run: make its program available
        to whichever worker re-runs it."""


@dataclass
class LoopStats:
    started: float
    trials_started: int = 0
    trials_finished: int = 0
    gave_up: int = 0
    running: int = 0
    inert: int = 0  # proposals sent back because their smoke run behaved exactly as the parent's


class Controller(Planning):
    def __init__(
        self, ws: Workspace, *, say: Callable[[str], None] = print, peers: Peers | None = None
    ) -> None:
        self.ws = ws
        self.config = ws.config
        self.say = say
        self.peers = peers or Peers()
        self.lock = threading.RLock()
        self.rng = random.Random(self.config.campaign.seed)
        self.archive = Archive()
        self.stopping = threading.Event()  # first Ctrl-C: finish what runs, start nothing new
        self.interrupt = threading.Event()  # second Ctrl-C: kill what runs
        self.draining = False  # the loop ended on its own (budget): staged trials still run
        self.plans: queue.Queue[TrialPlan] = queue.Queue(maxsize=QUEUE_AHEAD)
        self.urgent: deque[TrialPlan] = deque()  # confirm runs and re-queued trials go first
        self.pending_children: Counter[int] = Counter()
        self.failed_attempts: dict[int, list[Outcome]] = {}
        self.confirms = ConfirmBook(self.config)
        self.stats = LoopStats(started=time.monotonic())
        self.explore = self.config.search.explore_tier
        self.exhausted: set[Operation] = set()
        self.leftover: list[TrialPlan] = []  # plans a stop left unstarted (controller.search.prepared)
        self.requests_taken: set[str] = set()  # request ids a plan was made for (controller.search.requests)
        self.parent_behaviour = ParentBehaviour()  # parents' smoke-run digests (controller.search.inert)
        # Plans handed to a worker that has not asked the study yet: the trial budget counts them, or
        # with several slots the main loop launches past max_trials before the workers' asks land.
        self.launching = 0

    # ------------------------------------------------------------------ start-up

    def resume(self) -> None:
        """Make the study and the git store agree after a crash, then rebuild the archive.

        A RUNNING trial whose commit is in the store crashed after recording: tell the study from the
        note. One without a commit never finished: fail it and re-queue its parameters, unless its
        run was lost ``study.max_reruns`` times already (then it stays failed).
        """
        study, store = self.ws.study, self.ws.store
        for number in study.running_trials():
            commit = store.commit_of(number)
            if commit is None:
                continue
            self.say(f"resume: trial {number} was recorded in git but not in the study; telling the study")
            tell_from_note(self.ws, number, commit, self.explore)
        recovered = study.recover_stale(lambda number: False)
        trials = study.trials()
        rerun = {t.user_attrs.get(ATTR_REQUEUED_FROM) for t in trials}
        given_up = [t.number for t in trials if t.number in recovered and t.user_attrs.get(ATTR_GAVE_UP)]
        if requeued := [n for n in recovered if n in rerun]:
            self.say(f"resume: trials {requeued} were interrupted; re-queued")
        if given_up:
            self.say(f"resume: trials {given_up} lost their run too often (study.max_reruns); not re-run")
        if never_ran := [n for n in recovered if n not in rerun and n not in given_up]:
            self.say(f"resume: trials {never_ran} died while being asked, before they ran; not re-run")
        self.archive = rebuild_archive(trials)
        self._sync_frontier()

    # ------------------------------------------------------------------ budgets

    def _over_trial_budget(self, number: int) -> str | None:
        """Why trial ``number`` may not run, when other workers on the shared study took the last
        trials of the budget between this worker's budget check and its ask; None when it may.
        Trials are ranked by number among those the budget counts (:func:`budget_trials`), so every
        worker reaches the same verdict."""
        cap = self.config.budget.max_trials
        if cap is None or not self.peers.shared:
            return None
        rank = sum(1 for t in budget_trials(self.ws.study.trials()) if t.number <= number)
        return (
            f"over the trial budget ({rank} > {cap}): other workers took the last trials"
            if rank > cap
            else None
        )

    def budget_left(self) -> str | None:
        """None while the campaign may go on, else why it stops. The trial budget counts experiments
        (:func:`budget_trials`): a trial whose run was lost and that is re-run counts once."""
        budget = self.config.budget
        asked = len(budget_trials(self.ws.study.trials())) + self.launching
        if budget.max_trials is not None and asked >= budget.max_trials:
            return f"trial budget reached ({asked} of {budget.max_trials})"
        hours = (time.monotonic() - self.stats.started) / 3600
        if budget.max_wall_hours is not None and hours >= budget.max_wall_hours:
            return f"wall-clock budget reached ({hours:.2f} h of {budget.max_wall_hours} h)"
        spent = self.ws.ledger.total_cost_usd
        if (
            budget.max_llm_usd is not None
            and self.config.agent.proposer == "llm"
            and spent >= budget.max_llm_usd
        ):
            return f"LLM budget reached (${spent:.2f} of ${budget.max_llm_usd:.2f})"
        return None

    # ------------------------------------------------------------------ executing

    def execute(
        self,
        plan: TrialPlan,
        take_slot: Callable[[], tuple[int, ...] | None],
        free_slot: Callable[[], None] = lambda: None,
    ) -> None:
        """Worker thread body: one trial from ask to tell. ``take_slot`` waits for the run's slot once
        the program is written and gives its GPUs, or None when the user stopped first; ``free_slot``
        gives it back after the run. Nothing a trial does escapes this method: a fault of the harness
        fails the trial (when it has one) with the error as its reason."""
        started: list[TrialHandle] = []
        with self.lock:
            self.stats.running += 1
        try:
            self._execute(plan, take_slot, started, free_slot)
        except Exception as exc:
            if not started:
                log.exception("could not start a trial for %s", plan.operation)
                self.say(f"could not start a {plan.operation} trial: {exc}")
            else:
                number = started[0].number
                log.exception("trial %d failed in the harness", number)
                with self.lock:
                    try:
                        self.ws.study.fail(started[0], f"harness error: {exc}")
                    except Exception:  # the study itself may be what failed; the log has the first error
                        log.exception("could not fail trial %d", number)
                self.say(f"trial {number}: harness error: {exc}")
        finally:
            with self.lock:
                self.stats.running -= 1
                self.stats.trials_finished += 1
                if (
                    plan.parent is not None
                    and plan.operation is not Operation.CONFIRM
                    and plan.requeued is None
                ):
                    self.pending_children[plan.parent.trial] -= 1
                if not started and plan.requeued is None:
                    self.launching -= 1
                if plan.operation is Operation.CONFIRM and plan.confirm_source is not None and not started:
                    self.confirms.ran(plan.confirm_source)

    def _execute(
        self,
        plan: TrialPlan,
        take_slot: Callable[[], tuple[int, ...] | None],
        started: list[TrialHandle],
        free_slot: Callable[[], None],
    ) -> None:
        ws = self.ws
        tier = self.config.tiers.get(plan.tier_name)
        source = child_source(ws, plan)
        knobs = program_knobs(source, ws.entry, allow_missing=plan.operation is Operation.SEED)
        # A program without a knob table (an imported seed) runs with its own defaults.
        tier_env = knob_overrides(tier, plan.tier_name, knobs) if knobs else {}
        by_name = {k.name: k for k in knobs}
        fixed: dict[str, object] = {}
        for name, text in {**tier_env, **(plan.proposal.knob_values if plan.proposal else {})}.items():
            fixed[name] = by_name[name].parse(text) if name in by_name else text
        if not plan.samples_knobs:  # only tuning samples; other plans keep the defaults and what they name
            fixed = {**{k.name: k.default for k in knobs}, **fixed}
        with self.lock:
            if plan.requeued is not None:
                handle = plan.requeued
            else:
                attrs: dict[str, object] = {"hypothesis": plan.hypothesis, "seed": plan.seed}
                if plan.request is not None:
                    attrs.update(request_attrs(plan.request))
                if plan.proposal is not None:
                    usage = plan.proposal.usage
                    attrs.update(
                        rationale=plan.proposal.rationale,
                        proposer=plan.proposal.proposer,
                        tokens=usage.prompt_tokens + usage.completion_tokens,
                        cost_usd=usage.cost_usd,
                        new_knobs=list(plan.proposal.new_knobs),
                        scoring_change=plan.proposal.scoring_change,
                    )
                handle = ws.study.ask(
                    plan.parent, knobs, fixed, tier=plan.tier_name, operation=plan.operation, attrs=attrs
                )
            started.append(handle)
            if plan.requeued is None:
                self.launching -= 1
            self.stats.trials_started += 1
            over = self._over_trial_budget(handle.number) if plan.requeued is None else None
            if over:
                ws.study.fail(handle, over)
                self.leftover.append(plan)  # the proposal is kept for a later, larger budget
                return
        parent_label = "seed" if plan.parent is None else f"parent {plan.parent.trial}"
        # Said when the run starts: the ask and the program come earlier, while the slots are busy.
        headline = (
            f"trial {handle.number}: {plan.operation} on {parent_label} [{plan.tier_name}] {plan.hypothesis}"
        )
        program_dir, changed = prepare_program(ws, plan, handle.number, handle.knob_values, tier_env)
        gpus = take_slot()
        if gpus is None:
            with self.lock:
                self.peers.set_aside(ws, handle.number)
                ws.study.requeue(handle, "not started: the campaign stopped while it waited for a slot")
            self.say(f"{headline} · not started (the campaign stopped first); re-queued for the next start")
            return
        if plan.operation is Operation.TUNE:  # on the slot: a CPU smoke run beside a run would slow it
            report = self._smoke_knobs(plan, handle.knob_values, source)
            if report is not None and not report.ok:
                with self.lock:
                    ws.study.fail(handle, f"preflight {report.stage}: {report.reason}")
                self.say(f"{headline} · preflight failed ({report.stage}): {report.reason[:160]}")
                return
        self.say(headline)
        with self.lock:
            plausibility = plausibility_for(self.config, self.archive, plan)
        result = run_plan(ws, plan, handle, tier, tier_env, program_dir, gpus, self.interrupt, plausibility)
        free_slot()  # the GPUs are done: the next trial starts while this one is recorded
        self._record(plan, handle, result, changed)

    def _record(self, plan: TrialPlan, handle, result: RunResult, changed) -> None:
        ws = self.ws
        interrupted = result.stopped_by is StopRequest.USER
        with self.lock:
            if interrupted:
                ws.study.fail(handle, result.reason)
                self.say(f"trial {handle.number}: interrupted; recorded as failed")
                return
            if plan.operation is Operation.CONFIRM:
                self._record_confirm(plan, handle, result)
                return
            candidate = record_candidate(ws, plan, handle, result, changed)
            attrs = candidate_attr(candidate)
            attrs["candidate_commit"] = candidate.commit
            if plan.operation is Operation.SEED and plan.request is None:
                attrs[ATTR_PROMOTED] = True  # the campaign's seed program is the first parent of record
                candidate = with_confirmed(candidate)
            ws.study.set_note(
                handle,
                plan.hypothesis,
                ws.store.diff(plan.parent.commit, candidate.commit) if plan.parent else "",
            )
            tell_study(ws, handle, plan.tier_name, result, attrs)
            self.archive.add(candidate)
            self._sync_frontier()
            self.urgent.extend(self.confirms.after_explore(self.archive, candidate))
        self._announce(handle.number, plan, result)

    def _record_confirm(self, plan: TrialPlan, handle, result: RunResult) -> None:
        ws = self.ws
        source = plan.confirm_source
        assert source is not None
        self.confirms.ran(source)
        record = self.confirms.record_for(self.archive, source)
        attrs = confirm_attrs(record, plan.seed)
        verdict = judge_integrity(self.archive, handle.number, source, record, result)
        attrs.update(verdict)
        if ATTR_DISCREDITS in verdict:
            self.say(f"trial {handle.number}: trial {source.trial} is discredited: {result.reason[:200]}")
        record = self.confirms.record_for(self.archive, source)
        if result.status is RunStatus.OK and result.val_bpb is not None and result.val_loss is not None:
            if record is None:  # the program's first run on the confirm tier: a record of its own
                record = record_candidate(ws, plan, handle, result, {})
                if source.confirmed and source.operation is Operation.SEED:
                    record = with_confirmed(record)
                    attrs[ATTR_PROMOTED] = True
                attrs.update(candidate_attr(record))
            else:
                note_extra_seed(ws, record, handle.number, plan.seed, result)
                record = with_extra_seed(record, result.val_bpb, result.val_loss)
            self.archive.add(record)
        for winner, verdict in self.confirms.judge(self.archive):
            attrs[ATTR_PROMOTES] = winner.trial
            self.archive.add(with_confirmed(winner))
            self.say(f"trial {handle.number}: {verdict}")
        tell_study(ws, handle, plan.tier_name, result, attrs)
        self._sync_frontier()
        self._announce(handle.number, plan, result)

    def _sync_frontier(self) -> None:
        frontier = [c.trial for c in self.archive.frontier(self.config.frontier.k, self.explore)]
        if frontier:
            self.ws.store.set_frontier(frontier)
        self.peers.after_record(self.ws)

    def refresh(self) -> None:
        """Take in what other workers recorded: their commits (peers.before_plan) and the study."""
        self.peers.before_plan(self.ws)
        with self.lock:
            self.archive = rebuild_archive(self.ws.study.trials())

    def _announce(self, number: int, plan: TrialPlan, result: RunResult) -> None:
        best = self.archive.best(self.explore)
        score = f"bpb {result.val_bpb:.4f}" if result.val_bpb is not None else result.reason[:120]
        best_text = (
            f" · best {best.val_bpb:.4f} (trial {best.trial})" if best and best.val_bpb is not None else ""
        )
        self.say(f"trial {number}: {result.status} {score}{best_text}")

    # ------------------------------------------------------------------ the loop

    def run(self) -> str:
        """Run until a budget or the user stops the campaign; return why it stopped."""
        self.resume()
        pool = (
            GpuPool(self.config.sandbox.gpus)
            if self.config.sandbox.gpus
            else GpuPool.cpu(self.config.sandbox.cpu_slots)
        )
        gate = SlotGate(pool, self._user_stopped)
        for handle in self._requeued():
            self.urgent.append(handle)
        for plan in load_prepared(self.ws.run_dir, self.archive, self.say):
            self.urgent.append(plan)
            if plan.request is not None:
                self.requests_taken.add(plan.request.id)
            if plan.parent is not None and plan.operation is not Operation.CONFIRM:
                self.pending_children[plan.parent.trial] += 1
        seed = self.seed_plan()
        # One producer per slot: with a slow LLM, a single producer starves slots once slots x latency
        # exceeds a run (measured in bench/loop_duty_cycle.py).
        producers = [
            threading.Thread(target=self._produce, name=f"proposals-{i}", daemon=True)
            for i in range(max(1, pool.total))
        ]
        workers: list[threading.Thread] = []
        previous = _install_sigint(self)
        why = ""
        try:
            if seed is not None and not self.urgent:
                why = self.budget_left() or ""
                if not why:
                    self._launch(seed, gate, workers)
                    self._wait(workers)  # every other plan needs a scored parent
            for producer in producers:
                producer.start()
            while not why:
                if self.stopping.is_set():
                    why = "stopped by the user"
                    break
                why = self.budget_left() or ""
                if why:
                    owed = self._owed_rerun()
                    if owed is None:
                        break
                    why = ""  # the budget already paid for it: its first attempt died with a worker
                    self._launch(owed, gate, workers)
                    continue
                plan = self.urgent.popleft() if self.urgent else self._next_plan()
                if plan is None:
                    if not any(w.is_alive() for w in workers) and self._starved():
                        why = "nothing left to try: no eligible parent and no proposals"
                    continue
                self._launch(plan, gate, workers)
        finally:
            self.draining = not self.stopping.is_set()
            self.stopping.set()
            self._wait(workers)
            signal.signal(signal.SIGINT, previous)
            self._keep_prepared(producers)
        return why

    def _keep_prepared(self, producers: list[threading.Thread]) -> None:
        """Save the plans that were prepared but never started, so a resume runs them first."""
        deadline = time.monotonic() + 2.0  # a proposal finishing right now is worth keeping
        for producer in producers:
            if producer.is_alive():
                producer.join(timeout=max(0.0, deadline - time.monotonic()))
        while True:
            try:
                self.leftover.append(self.plans.get_nowait())
            except queue.Empty:
                break
        self.leftover.extend(self.urgent)
        self.urgent.clear()
        kept = save_prepared(self.ws.run_dir, self.leftover)
        if kept:
            self.say(f"kept {kept} prepared plan(s) for the next start")

    def _next_plan(self) -> TrialPlan | None:
        try:
            return self.plans.get(timeout=0.2)
        except queue.Empty:
            return None

    def _starved(self) -> bool:
        return self.archive.best(self.explore) is None and self.stats.trials_finished > 0

    def _owed_rerun(self) -> TrialPlan | None:
        """A re-queued trial still to run, taken out of the urgent queue (fetched from the study when
        none is queued), so an exhausted budget never strands a re-run of a crashed trial: the budget
        counted it from the moment it was queued."""
        if not any(p.requeued is not None for p in self.urgent):
            self.urgent.extend(self._requeued())
        owed = next((p for p in self.urgent if p.requeued is not None), None)
        if owed is not None:
            self.urgent.remove(owed)
        return owed

    def _requeued(self) -> list[TrialPlan]:
        plans = []
        while (handle := self.ws.study.ask_requeued()) is not None:
            plans.append(requeued_plan(self.ws, self.archive, handle, self.explore))
        return plans

    def _user_stopped(self) -> bool:
        """Whether the user stopped the campaign (Ctrl-C), not the loop ending on a budget."""
        return (self.stopping.is_set() and not self.draining) or self.interrupt.is_set()

    def _launch(self, plan: TrialPlan, gate: SlotGate, workers: list[threading.Thread]) -> None:
        tier = self.config.tiers.get(plan.tier_name)
        ticket = gate.stage(tier.nproc if tier.device == "gpu" else 1, use_gpus=tier.device == "gpu")
        if ticket is None:  # Ctrl-C came while this plan waited: start nothing new
            self.leftover.append(plan)
            return

        def body() -> None:
            try:
                self.execute(plan, ticket.take, ticket.free)
            finally:
                ticket.close()

        if plan.requeued is None:  # a re-queued trial is already in the study
            with self.lock:
                self.launching += 1
        worker = threading.Thread(target=body, name=f"trial-{len(workers)}", daemon=False)
        worker.start()
        workers.append(worker)
        workers[:] = [w for w in workers if w.is_alive()]

    def _wait(self, workers: list[threading.Thread]) -> None:
        for worker in workers:
            while worker.is_alive():
                worker.join(timeout=0.5)


def _install_sigint(controller: Controller):
    if threading.current_thread() is not threading.main_thread():
        return signal.getsignal(signal.SIGINT)

    def handler(signum, frame) -> None:  # noqa: ARG001
        if not controller.stopping.is_set():
            controller.stopping.set()
            controller.say("stopping: running trials will finish and be recorded (Ctrl-C again to kill them)")
        else:
            controller.interrupt.set()
            controller.say("killing running trials; they will be recorded as failed")

    return signal.signal(signal.SIGINT, handler)
