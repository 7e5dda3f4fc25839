"""The unattended search loop: plan trials, keep the slots busy, record every result, stop cleanly.

Threads: the main thread schedules (takes a plan, waits for the staging place, starts a worker); one
producer thread per slot runs the :class:`~controller.search.planning.Planner` ahead (the LLM is slow,
so the next proposals are ready before a slot frees up); one worker thread per trial, which asks the
study and writes the program before it waits for a slot (controller.search.slots) and hands the
result to the :class:`~controller.search.recorder.Recorder`. Every write to the study, the git store
and the archive happens under the shared state's lock, in the order controller.search.trial describes.

Ctrl-C once: no new trials; running ones finish and are recorded, and a trial staged for the next
free slot is failed and re-queued (the next start runs it first). Twice: running ones are killed and
recorded as failed. Running the same command again resumes (see :meth:`Controller.resume`).
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from controller.search.confirm import ConfirmBook
from controller.search.inflight import Reservation
from controller.search.planning import Planner
from controller.search.prepared import load_prepared, requeued_plan, save_prepared
from controller.search.recorder import Recorder
from controller.search.requests import request_attrs
from controller.search.slots import SlotGate
from controller.search.state import LoopStats, Peers, SearchState
from controller.search.trial import (
    TrialPlan,
    child_source,
    knob_overrides,
    offline_attrs,
    plausibility_for,
    prepare_program,
    program_knobs,
    run_plan,
    tell_from_note,
)
from controller.search.workspace import Workspace
from controller.store.archive import Operation
from controller.store.records import rebuild_archive
from controller.store.study import TrialHandle, budget_trials
from controller.store.trial_attrs import TrialAttrs
from sandbox import GpuPool

__all__ = ["Controller", "LoopStats", "Peers"]

log = logging.getLogger(__name__)


class Controller:
    """Runs a campaign: schedules plans onto slots, executes each trial, and stops cleanly.

    Its parts: a :class:`Planner` (what to try next), a :class:`Recorder` (writing results down), the
    :class:`~controller.search.state.SearchState` they share, and an in-flight ledger in that state.
    Workers use :meth:`adopt_reruns` and :meth:`refresh`; everything else is the loop's own.
    """

    def __init__(
        self, ws: Workspace, *, say: Callable[[str], None] = print, peers: Peers | None = None
    ) -> None:
        self.ws = ws
        self.config = ws.config
        self.state = SearchState(ws=ws, confirms=ConfirmBook(ws.config), say=say, peers=peers or Peers())
        self.planner = Planner(self.state, budget_left=self.budget_left, refresh=self.refresh)
        self.recorder = Recorder(self.state)
        self.draining = False  # the loop ended on its own (budget): staged trials still run

    @property
    def say(self) -> Callable[[str], None]:
        return self.state.say

    @say.setter
    def say(self, say: Callable[[str], None]) -> None:
        self.state.say = say

    @property
    def stats(self) -> LoopStats:
        return self.state.stats

    def stop(self) -> None:
        """Start nothing new; running trials finish and are recorded (what Ctrl-C once does)."""
        self.state.stopping.set()

    def queued_plans(self) -> list[TrialPlan]:
        """The plans waiting to go first (confirm runs, re-runs), oldest first: a snapshot."""
        with self.state.lock:
            return list(self.state.urgent)

    def adopt_reruns(self) -> list[TrialPlan]:
        """Take the study's waiting re-runs (of trials whose worker died) into the queue that goes
        first, after rebuilding the archive so that their parents are known; return them."""
        with self.state.lock:
            self.state.rebuild_archive()
            plans = self._requeued()
            self.state.urgent.extend(plans)
        return plans

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
            tell_from_note(self.ws, number, commit, self.state.explore)
        recovered = study.recover_stale(lambda number: False)
        trials = study.trials()
        rerun = {t.attrs.requeued_from for t in trials}
        given_up = [t.number for t in trials if t.number in recovered and t.attrs.gave_up]
        if requeued := [n for n in recovered if n in rerun]:
            self.say(f"resume: trials {requeued} were interrupted; re-queued")
        if given_up:
            self.say(f"resume: trials {given_up} lost their run too often (study.max_reruns); not re-run")
        if never_ran := [n for n in recovered if n not in rerun and n not in given_up]:
            self.say(f"resume: trials {never_ran} died while being asked, before they ran; not re-run")
        with self.state.lock:
            self.state.archive = rebuild_archive(trials)
        self.recorder.sync_frontier()

    # ------------------------------------------------------------------ budgets

    def _over_trial_budget(self, number: int) -> str | None:
        """Why trial ``number`` may not run, when other workers on the shared study took the last
        trials of the budget between this worker's budget check and its ask; None when it may.
        Trials are ranked by number among those the budget counts (:func:`budget_trials`), so every
        worker reaches the same verdict."""
        cap = self.config.budget.max_trials
        if cap is None or not self.state.peers.shared:
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
        if budget.max_trials is not None and self._trials_counted() >= budget.max_trials:
            # Without the lock a trial being asked may be counted twice (never missed): the lock that
            # covers each ask and its ledger step settles it, taken only near the end of the budget so
            # trial threads do not wait on every check.
            with self.state.lock:
                asked = self._trials_counted()
            if asked >= budget.max_trials:
                return f"trial budget reached ({asked} of {budget.max_trials})"
        hours = (time.monotonic() - self.state.stats.started) / 3600
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

    def _trials_counted(self) -> int:
        """Trials the budget counts: in the study (:func:`budget_trials`) or on their way to it. The
        ledger is read first: a trial thread asks the study before its reservation leaves the launch
        count, so whichever of the two a trial has reached when read, it is in one or both."""
        launching = self.state.inflight.launching
        return launching + len(budget_trials(self.ws.study.trials()))

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
        fails the trial (when it has one) with the error as its reason. The plan's reservation is
        released here, whatever happened."""
        state = self.state
        started: list[TrialHandle] = []
        with state.lock:
            state.stats.running += 1
        try:
            self._execute(plan, take_slot, started, free_slot)
        except Exception as exc:
            if not started:
                log.exception("could not start a trial for %s", plan.operation)
                state.say(f"could not start a {plan.operation} trial: {exc}")
            else:
                number = started[0].number
                log.exception("trial %d failed in the harness", number)
                with state.lock:
                    try:
                        self.ws.study.fail(started[0], f"harness error: {exc}")
                    except Exception:  # the study itself may be what failed; the log has the first error
                        log.exception("could not fail trial %d", number)
                state.say(f"trial {number}: harness error: {exc}")
        finally:
            with state.lock:
                state.stats.running -= 1
                state.stats.trials_finished += 1
                if plan.reservation is not None:
                    plan.reservation.release()
                if plan.operation is Operation.CONFIRM and plan.confirm_source is not None and not started:
                    state.confirms.ran(plan.confirm_source)

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
        state = self.state
        with state.lock:
            if plan.requeued is not None:
                handle = plan.requeued
            else:
                attrs = TrialAttrs(hypothesis=plan.hypothesis, seed=plan.seed, published=plan.published)
                attrs = attrs.merged(offline_attrs(plan))  # a stack's second parent, an ablated part
                if plan.smoke_skipped:  # never silently: the trial says why no smoke run guarded it
                    attrs = attrs.updated(smoke_skipped=plan.smoke_skipped)
                if plan.request is not None:
                    attrs = attrs.merged(request_attrs(plan.request))
                if plan.proposal is not None:
                    usage = plan.proposal.usage
                    attrs = attrs.updated(
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
            if plan.reservation is not None:
                plan.reservation.asked()
            state.stats.trials_started += 1
            over = self._over_trial_budget(handle.number) if plan.requeued is None else None
            if over:
                ws.study.fail(handle, over)
                state.leftover.append(plan)  # the proposal is kept for a later, larger budget
                return
        parent_label = "seed" if plan.parent is None else f"parent {plan.parent.trial}"
        # Said when the run starts: the ask and the program come earlier, while the slots are busy.
        headline = (
            f"trial {handle.number}: {plan.operation} on {parent_label} [{plan.tier_name}] {plan.hypothesis}"
        )
        program_dir, changed = prepare_program(ws, plan, handle.number, handle.knob_values, tier_env)
        gpus = take_slot()
        if gpus is None:
            with state.lock:
                state.peers.set_aside(ws, handle.number)
                ws.study.requeue(handle, "not started: the campaign stopped while it waited for a slot")
            self.say(f"{headline} · not started (the campaign stopped first); re-queued for the next start")
            return
        if plan.operation is Operation.TUNE:  # on the slot: a CPU smoke run beside a run would slow it
            report = self.planner.smoke_knobs(plan, handle.knob_values, source)
            if report is not None and not report.ok:
                with state.lock:
                    ws.study.fail(handle, f"preflight {report.stage}: {report.reason}")
                self.say(f"{headline} · preflight failed ({report.stage}): {report.reason[:160]}")
                return
        self.say(headline)
        with state.lock:
            plausibility = plausibility_for(self.config, state.archive, plan)
        run_env = dict(tier_env)
        if plan.published:  # it reads its environment, not its (injected) knob table: pass every value
            values = handle.knob_values
            run_env = {**{k.name: k.render(values[k.name]) for k in knobs if k.name in values}, **tier_env}
        result = run_plan(ws, plan, handle, tier, run_env, program_dir, gpus, state.interrupt, plausibility)
        free_slot()  # the GPUs are done: the next trial starts while this one is recorded
        self.recorder.record(plan, handle, result, changed)

    def refresh(self) -> None:
        """Take in what other workers recorded: their commits (peers.before_plan) and the study."""
        self.state.peers.before_plan(self.ws)
        self.state.rebuild_archive()

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
        self.planner.gpu_pool = pool if self.config.sandbox.gpus else None
        state = self.state
        state.urgent.extend(self._requeued())
        for plan in load_prepared(self.ws.run_dir, state.archive, state.say):
            if plan.request is not None:
                self.planner.mark_taken(plan.request)
            child_of = plan.parent.trial if plan.parent and plan.operation is not Operation.CONFIRM else None
            state.urgent.append(replace(plan, reservation=state.inflight.reserve(child_of)))
        seed = self.planner.seed_plan()
        # One producer per slot: with a slow LLM, a single producer starves slots once slots x latency
        # exceeds a run (measured in bench/loop_duty_cycle.py).
        producers = [
            threading.Thread(target=self.planner.produce, name=f"proposals-{i}", daemon=True)
            for i in range(max(1, pool.total))
        ]
        workers: list[threading.Thread] = []
        previous = _install_sigint(self)
        why = ""
        try:
            if seed is not None and not state.urgent:
                why = self.budget_left() or ""
                if not why:
                    self._launch(seed, gate, workers)
                    self._wait(workers)  # every other plan needs a scored parent
            for producer in producers:
                producer.start()
            while not why:
                if state.stopping.is_set():
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
                with state.lock:
                    plan = state.urgent.popleft() if state.urgent else None
                plan = plan or self._next_plan()
                if plan is None:
                    if not any(w.is_alive() for w in workers) and self._starved():
                        why = "nothing left to try: no eligible parent and no proposals"
                    continue
                self._launch(plan, gate, workers)
        finally:
            self.draining = not state.stopping.is_set()
            state.stopping.set()
            self._wait(workers)
            signal.signal(signal.SIGINT, previous)
            self._keep_prepared(producers)
        return why

    def _keep_prepared(self, producers: list[threading.Thread]) -> None:
        """Save the plans that were prepared but never started, so a resume runs them first."""
        state = self.state
        deadline = time.monotonic() + 2.0  # a proposal finishing right now is worth keeping
        for producer in producers:
            if producer.is_alive():
                producer.join(timeout=max(0.0, deadline - time.monotonic()))
        with state.lock:
            while True:
                try:
                    state.leftover.append(self.planner.plans.get_nowait())
                except queue.Empty:
                    break
            state.leftover.extend(state.urgent)
            state.urgent.clear()
            for plan in state.leftover:  # no longer in flight: the next start reserves them again
                if plan.reservation is not None:
                    plan.reservation.release()
            kept = save_prepared(self.ws.run_dir, state.leftover)
        if kept:
            state.say(f"kept {kept} prepared plan(s) for the next start")

    def _next_plan(self) -> TrialPlan | None:
        try:
            return self.planner.plans.get(timeout=0.2)
        except queue.Empty:
            return None

    def _starved(self) -> bool:
        state = self.state
        return state.archive.best(state.explore) is None and state.stats.trials_finished > 0

    def _owed_rerun(self) -> TrialPlan | None:
        """A re-queued trial still to run, taken out of the urgent queue (fetched from the study when
        none is queued), so an exhausted budget never strands a re-run of a crashed trial: the budget
        counted it from the moment it was queued."""
        urgent = self.state.urgent
        with self.state.lock:
            if not any(p.requeued is not None for p in urgent):
                urgent.extend(self._requeued())
            owed = next((p for p in urgent if p.requeued is not None), None)
            if owed is not None:
                urgent.remove(owed)
        return owed

    def _requeued(self) -> list[TrialPlan]:
        plans = []
        while (handle := self.ws.study.ask_requeued()) is not None:
            plans.append(requeued_plan(self.ws, self.state.archive, handle, self.state.explore))
        return plans

    def _user_stopped(self) -> bool:
        """Whether the user stopped the campaign (Ctrl-C), not the loop ending on a budget."""
        state = self.state
        return (state.stopping.is_set() and not self.draining) or state.interrupt.is_set()

    def _launch(self, plan: TrialPlan, gate: SlotGate, workers: list[threading.Thread]) -> None:
        tier = self.config.tiers.get(plan.tier_name)
        ticket = gate.stage(tier.nproc if tier.device == "gpu" else 1, use_gpus=tier.device == "gpu")
        if ticket is None:  # Ctrl-C came while this plan waited: start nothing new
            with self.state.lock:
                self.state.leftover.append(plan)
            return
        if plan.requeued is None:  # a re-queued trial is already in the study: no launch to count
            if plan.reservation is None:  # the seed's run, a confirm run: no parent's child
                plan = replace(plan, reservation=self.state.inflight.reserve(None))
            reservation: Reservation = plan.reservation
            reservation.launched()
        launched = plan

        def body() -> None:
            try:
                self.execute(launched, ticket.take, ticket.free)
            finally:
                ticket.close()

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
        if not controller.state.stopping.is_set():
            controller.stop()
            controller.say("stopping: running trials will finish and be recorded (Ctrl-C again to kill them)")
        else:
            controller.state.interrupt.set()
            controller.say("killing running trials; they will be recorded as failed")

    return signal.signal(signal.SIGINT, handler)
