"""The unattended search loop: plan trials, keep the slots busy, record every result, stop cleanly.

Threads: the main thread schedules (takes a plan, waits for a slot, starts a worker); one producer
thread prepares proposals ahead (the LLM is slow, so the next proposals are ready before a slot
frees up); one worker thread per running trial. Every write to the study, the git store and the
archive happens under one lock, in the order described in controller.trial.

Ctrl-C once: no new trials; running ones finish and are recorded. Twice: running ones are killed
and recorded as failed. Running the same command again resumes (see :meth:`Controller.resume`).
"""

from __future__ import annotations

import logging
import queue
import random
import signal
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ProposerExhausted
from agent.proposal import GiveUp, Outcome, Proposal
from controller.archive import Archive, Candidate, Operation
from controller.confirm import ConfirmBook
from controller.context import build_context
from controller.records import ATTR_PROMOTED, ATTR_PROMOTES, rebuild_archive, with_confirmed, with_extra_seed
from controller.study import TrialHandle
from controller.trial import (
    TrialPlan,
    candidate_attr,
    child_source,
    confirm_attrs,
    knob_overrides,
    note_extra_seed,
    record_candidate,
    run_plan,
    tell_study,
    write_trial_log,
)
from controller.workspace import Workspace
from sandbox import GpuPool, RunResult, RunStatus, preflight
from sandbox.knobs import parse_knob_table

log = logging.getLogger(__name__)

QUEUE_AHEAD = 2  # proposals prepared ahead of free slots


class Peers:
    """Hooks for workers sharing one study and one git remote (controller.worker); no-ops alone."""

    shared = False

    def before_plan(self, ws: Workspace) -> None:
        """Bring the local git store up to date with the shared remote."""

    def after_record(self, ws: Workspace) -> None:
        """Publish newly recorded candidates, notes and frontier moves to the shared remote."""


@dataclass
class LoopStats:
    started: float
    trials_started: int = 0
    trials_finished: int = 0
    gave_up: int = 0
    running: int = 0


class Controller:
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
        self.plans: queue.Queue[TrialPlan] = queue.Queue(maxsize=QUEUE_AHEAD)
        self.urgent: deque[TrialPlan] = deque()  # confirm runs and re-queued trials go first
        self.pending_children: Counter[int] = Counter()
        self.failed_attempts: dict[int, list[Outcome]] = {}
        self.confirms = ConfirmBook(self.config)
        self.stats = LoopStats(started=time.monotonic())
        self.explore = self.config.search.explore_tier
        self.exhausted: set[Operation] = set()
        # Plans handed to a worker that has not asked the study yet: the trial budget counts them, or
        # with several slots the main loop launches past max_trials before the workers' asks land.
        self.launching = 0

    # ------------------------------------------------------------------ start-up

    def resume(self) -> None:
        """Make the study and the git store agree after a crash, then rebuild the archive.

        A RUNNING trial whose commit is in the store crashed after recording: tell the study from the
        note. One without a commit never finished: fail it and re-queue its parameters.
        """
        study, store = self.ws.study, self.ws.store
        for number in study.running_trials():
            commit = store.commit_of(number)
            if commit is None:
                continue
            self.say(f"resume: trial {number} was recorded in git but not in the study; telling the study")
            self._tell_from_note(number, commit)
        requeued = study.recover_stale(lambda number: False)
        if requeued:
            self.say(f"resume: trials {requeued} were interrupted; re-queued")
        self.archive = rebuild_archive(study.trials())
        self._sync_frontier()

    def _tell_from_note(self, number: int, commit: str) -> None:
        import json

        from controller.records import candidate_attrs, candidate_from_result
        from controller.study import limit_constraints

        record = self.ws.study.trial(number)
        note = json.loads(self.ws.store.read_note(commit) or "{}")
        result = RunResult.model_validate(note["result"])
        attrs = record.user_attrs
        candidate = candidate_from_result(
            trial=number,
            commit=commit,
            parent_trial=attrs.get("parent_trial"),
            tier=attrs.get("tier", self.explore),
            operation=Operation(attrs.get("operation", "mutate")),
            hypothesis=attrs.get("hypothesis", ""),
            result=result,
            knob_values=attrs.get("knob_values", {}),
        )
        handle = self.ws.study.handle_for_running(number)
        attrs = {"candidate": candidate_attrs(candidate), "candidate_commit": commit}
        if candidate.operation is Operation.SEED:
            attrs[ATTR_PROMOTED] = True
        if result.val_bpb is not None:
            limits = self.config.tiers.get(candidate.tier).limits()
            constraints = limit_constraints(
                candidate.artifact_bytes or 0, candidate.train_seconds or 0.0, limits
            )
            self.ws.study.tell(handle, result.val_bpb, constraints, attrs)
        else:
            self.ws.study.fail(handle, result.reason or str(result.status), attrs)

    # ------------------------------------------------------------------ budgets

    def budget_left(self) -> str | None:
        """None while the campaign may go on, else why it stops."""
        budget = self.config.budget
        asked = sum(1 for t in self.ws.study.trials() if t.state != "WAITING") + self.launching
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

    # ------------------------------------------------------------------ planning

    def seed_plan(self) -> TrialPlan | None:
        """The seed program's first run, unless it has one on the explore tier."""
        if any(c.operation is Operation.SEED and c.tier == self.explore for c in self.archive):
            return None
        return TrialPlan(operation=Operation.SEED, tier_name=self.explore, parent=None)

    def make_plan(self) -> TrialPlan | None:
        """Draw an operation and a parent and get a proposal; None when nothing can be proposed now."""
        if self.peers.shared:
            self.refresh()
        with self.lock:
            try:
                parent = self.archive.select_parent(
                    self.rng,
                    self.config.frontier.k,
                    self.config.frontier.child_bonus,
                    self.explore,
                    self.pending_children,
                )
            except LookupError:
                return None
            exclude = frozenset({Operation.HYPOTHESIS, Operation.CONFIRM} | self.exhausted)
            operation = self.config.operations.draw(self.rng, exclude=exclude)
            self.pending_children[parent.trial] += 1
            context = build_context(
                store=self.ws.store,
                archive=self.archive,
                parent=parent,
                entry=self.ws.entry,
                operation=str(operation),
                failed_attempts=tuple(self.failed_attempts.get(parent.trial, ())),
                tier=self.explore,
            )
        proposer = self.ws.proposers[operation]
        if proposer.name == "knobs":  # no code proposer configured: the draw becomes a tuning trial
            operation = Operation.TUNE
        try:
            proposal = proposer.propose(context, self._check_program(parent))
        except ProposerExhausted:
            self.say(f"{proposer.name} proposer has no proposals left; {operation} is now done by tuning")
            with self.lock:
                self.exhausted.add(operation)
                self.pending_children[parent.trial] -= 1
            return self.make_plan() if Operation.TUNE not in self.exhausted else None
        if isinstance(proposal, GiveUp):
            self._record_give_up(parent, operation, proposal)
            with self.lock:
                self.pending_children[parent.trial] -= 1
            return None
        return TrialPlan(operation=operation, tier_name=self.explore, parent=parent, proposal=proposal)

    def _check_program(self, parent: Candidate) -> Callable[[str], tuple[str, ...]]:
        """The agent's program check: the static knob table, then (when configured) a CPU smoke run,
        so a crash goes back to the agent as a repair turn instead of costing a trial."""
        parent_source = self.ws.store.files_at(parent.commit)[self.ws.entry]

        def check(source: str) -> tuple[str, ...]:
            knobs = parse_knob_table(source, filename=self.ws.entry)
            if source != parent_source and self.config.search.preflight_smoke:
                report = self._smoke(source, parent_source)
                if not report.ok:
                    raise ValueError(
                        f"the program failed its preflight at stage '{report.stage}': {report.reason}\n"
                        f"{report.log_excerpt[-1500:]}"
                    )
            return tuple(k.name for k in knobs)

        return check

    def _smoke(self, source: str, parent_source: str | None):  # -> PreflightReport
        with tempfile.TemporaryDirectory(prefix="autogolf-preflight-") as tmp:
            program = Path(tmp) / "program"
            program.mkdir()
            (program / self.ws.entry).write_text(source, encoding="utf-8")
            knobs = parse_knob_table(source, filename=self.ws.entry)
            smoke = self.config.tiers.get("smoke")
            return preflight(
                program,
                entry=self.ws.entry,
                data=self.ws.data,
                smoke_knobs=knob_overrides(smoke, "smoke", knobs),
                parent_source=parent_source,
                limits=smoke.limits(),
                backend=self.config.sandbox.backend,
                docker_image=self.config.sandbox.image,
                timeout_seconds=smoke.train_seconds + smoke.eval_seconds + smoke.startup_grace_seconds,
                out_dir=Path(tmp) / "out",
            )

    def _record_give_up(self, parent: Candidate, operation: Operation, give_up: GiveUp) -> None:
        """A proposal that never became a program is still a trial: a FAIL with the reason."""
        with self.lock:
            handle = self.ws.study.ask(parent, [], {}, tier=self.explore, operation=operation)
            self.ws.study.fail(
                handle,
                f"gave up: {give_up.reason}",
                {
                    "turns": give_up.turns,
                    "cost_usd": give_up.usage.cost_usd,
                    "tokens": give_up.usage.prompt_tokens + give_up.usage.completion_tokens,
                },
            )
            write_trial_log(
                self.ws,
                handle.number,
                [f"gave up after {give_up.turns} turns: {give_up.reason}", *give_up.transcript],
            )
            self.failed_attempts.setdefault(parent.trial, []).append(
                Outcome(hypothesis="(no usable proposal)", status="gave_up", note=give_up.reason[:300])
            )
            self.stats.gave_up += 1
        self.say(
            f"trial {handle.number}: gave up on a proposal for parent {parent.trial}: {give_up.reason.splitlines()[0][:160]}"
        )

    def _produce(self) -> None:
        """Producer thread: keep QUEUE_AHEAD plans ready."""
        idle = 0.0
        while not self.stopping.is_set():
            try:
                plan = self.make_plan()
            except Exception as exc:  # a harness fault in the agent (LLM down): report and back off
                self.say(f"proposal failed: {exc}")
                plan = None
                idle = min(60.0, idle * 2 or 2.0)
            if plan is None:
                self.stopping.wait(idle or 0.2)
                continue
            idle = 0.0
            while not self.stopping.is_set():
                try:
                    self.plans.put(plan, timeout=0.2)
                    break
                except queue.Full:
                    continue

    # ------------------------------------------------------------------ executing

    def execute(self, plan: TrialPlan, gpus: tuple[int, ...]) -> None:
        """Worker thread body: one trial from ask to tell. Nothing a trial does escapes this method:
        a fault of the harness fails the trial (when it has one) with the error as its reason."""
        started: list[TrialHandle] = []
        with self.lock:
            self.stats.running += 1
        try:
            self._execute(plan, gpus, started)
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

    def _execute(self, plan: TrialPlan, gpus: tuple[int, ...], started: list[TrialHandle]) -> None:
        ws = self.ws
        tier = self.config.tiers.get(plan.tier_name)
        source = child_source(ws, plan)
        knobs = parse_knob_table(source, filename=ws.entry)
        tier_env = knob_overrides(tier, plan.tier_name, knobs)
        by_name = {k.name: k for k in knobs}
        fixed: dict[str, object] = {}
        for name, text in {**tier_env, **(plan.proposal.knob_values if plan.proposal else {})}.items():
            fixed[name] = by_name[name].parse(text) if name in by_name else text
        if plan.operation is not Operation.TUNE:  # only tuning samples; other operations keep the defaults
            fixed = {**{k.name: k.default for k in knobs}, **fixed}
        with self.lock:
            if plan.requeued is not None:
                handle = plan.requeued
            else:
                attrs: dict[str, object] = {"hypothesis": plan.hypothesis, "seed": plan.seed}
                if plan.proposal is not None:
                    usage = plan.proposal.usage
                    attrs.update(
                        rationale=plan.proposal.rationale,
                        proposer=plan.proposal.proposer,
                        tokens=usage.prompt_tokens + usage.completion_tokens,
                        cost_usd=usage.cost_usd,
                        new_knobs=list(plan.proposal.new_knobs),
                    )
                handle = ws.study.ask(
                    plan.parent, knobs, fixed, tier=plan.tier_name, operation=plan.operation, attrs=attrs
                )
            started.append(handle)
            if plan.requeued is None:
                self.launching -= 1
            self.stats.trials_started += 1
        parent_label = "seed" if plan.parent is None else f"parent {plan.parent.trial}"
        self.say(
            f"trial {handle.number}: {plan.operation} on {parent_label} [{plan.tier_name}] {plan.hypothesis}"
        )
        if plan.operation is Operation.TUNE:
            report = self._smoke_knobs(plan, handle.knob_values, source)
            if report is not None and not report.ok:
                with self.lock:
                    ws.study.fail(handle, f"preflight {report.stage}: {report.reason}")
                self.say(f"trial {handle.number}: preflight failed ({report.stage}): {report.reason[:160]}")
                return
        result, changed, _ = run_plan(ws, plan, handle, tier, tier_env, gpus, self.interrupt)
        self._record(plan, handle, result, changed)

    def _smoke_knobs(self, plan: TrialPlan, values, source: str):
        """A knob-only trial gets the same CPU smoke run (a sampled shape can crash: heads ∤ width)."""
        if not self.config.search.preflight_smoke:
            return None
        from sandbox.knobs import rewrite_knob_defaults

        tier_env = knob_overrides(
            self.config.tiers.get(plan.tier_name), plan.tier_name, parse_knob_table(source)
        )
        bake = {n: v for n, v in values.items() if n not in tier_env}
        return self._smoke(rewrite_knob_defaults(source, bake), None)

    def _record(self, plan: TrialPlan, handle, result: RunResult, changed) -> None:
        ws = self.ws
        interrupted = result.status is RunStatus.PRUNED and "interrupted" in result.reason
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
            if plan.operation is Operation.SEED:
                attrs[ATTR_PROMOTED] = True  # the seed program is the first parent of record
                candidate = with_confirmed(candidate)
            ws.study.set_note(
                handle,
                plan.hypothesis,
                ws.store.diff(plan.parent.commit, candidate.commit) if plan.parent else "",
            )
            tell_study(ws, handle, plan, result, attrs)
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
        tell_study(ws, handle, plan, result, attrs)
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
        for handle in self._requeued():
            self.urgent.append(handle)
        seed = self.seed_plan()
        producer = threading.Thread(target=self._produce, name="proposals", daemon=True)
        workers: list[threading.Thread] = []
        previous = _install_sigint(self)
        why = ""
        try:
            if seed is not None and not self.urgent:
                why = self.budget_left() or ""
                if not why:
                    self._launch(seed, pool, workers)
                    self._wait(workers)  # every other plan needs a scored parent
            producer.start()
            while not why:
                if self.stopping.is_set():
                    why = "stopped by the user"
                    break
                why = self.budget_left() or ""
                if why:
                    break
                plan = self.urgent.popleft() if self.urgent else self._next_plan()
                if plan is None:
                    if not any(w.is_alive() for w in workers) and self._starved():
                        why = "nothing left to try: no eligible parent and no proposals"
                    continue
                self._launch(plan, pool, workers)
        finally:
            self.stopping.set()
            self._wait(workers)
            signal.signal(signal.SIGINT, previous)
        return why

    def _next_plan(self) -> TrialPlan | None:
        try:
            return self.plans.get(timeout=0.2)
        except queue.Empty:
            return None

    def _starved(self) -> bool:
        return self.archive.best(self.explore) is None and self.stats.trials_finished > 0

    def _requeued(self) -> list[TrialPlan]:
        plans = []
        while (handle := self.ws.study.ask_requeued()) is not None:
            parent = self.archive.get(handle.parent_trial) if handle.parent_trial in self.archive else None
            program = self.ws.trial_dir(handle.attrs.get("original_trial", handle.requeued_from)) / "program"
            files = (
                {self.ws.entry: (program / self.ws.entry).read_text()}
                if (program / self.ws.entry).exists()
                else {}
            )
            proposal = (
                Proposal(
                    hypothesis=str(handle.attrs.get("hypothesis", "")),
                    rationale=str(handle.attrs.get("rationale", "")),
                    files=files,
                )
                if files and parent
                else None
            )
            plans.append(
                TrialPlan(
                    operation=Operation(handle.operation or "mutate"),
                    tier_name=handle.tier or self.explore,
                    parent=parent,
                    proposal=proposal,
                    requeued=handle,
                )
            )
        return plans

    def _launch(self, plan: TrialPlan, pool: GpuPool, workers: list[threading.Thread]) -> None:
        tier = self.config.tiers.get(plan.tier_name)
        need = tier.nproc if tier.device == "gpu" else 1
        while True:
            try:
                lease = pool.acquire(need, timeout=0.5)
                break
            except TimeoutError:
                if self.interrupt.is_set():
                    return

        def body() -> None:
            with lease:
                self.execute(plan, lease.gpus if tier.device == "gpu" else ())

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
