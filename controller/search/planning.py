"""The planner: what to try next, prepared in producer threads while the slots are busy.

It reads the shared :class:`~controller.search.state.SearchState` (the archive, under its lock) and
never runs a trial itself. Order of sources: people's requests first (controller.search.requests),
then the operation mix over a parent drawn from the frontier. Each plan with a parent holds a
reservation in the in-flight ledger from the moment its parent is chosen, so a parent whose children
are still being prepared or run does not look childless; every path that drops a plan releases it.
"""

from __future__ import annotations

import queue
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

from agent.errors import ProposalError, ProposerExhausted
from agent.proposal import GiveUp, Outcome, Proposal, ProposerKind
from controller.search.ablation import Ablator
from controller.search.adoption import check_port, port_program, program_needs_cuda
from controller.search.context import build_context
from controller.search.inert import ParentBehaviour, deterministic_smoke, inert_message, masked_by_smoke
from controller.search.requests import Request, RequestKind, extra_files_of, pending, request_attrs
from controller.search.stacking import Stacker
from controller.search.state import SearchState
from controller.search.trial import BASE_SEED, TrialPlan, knob_overrides, write_trial_log
from controller.store.archive import Candidate, Operation
from controller.store.trial_attrs import TrialAttrs
from sandbox import GpuPool, preflight
from sandbox.knobs import Knob, parse_knob_table

QUEUE_AHEAD = 2  # proposals prepared ahead of free slots


class Planner:
    """Turns the archive and the request queue into :class:`TrialPlan` s, ``QUEUE_AHEAD`` at a time."""

    def __init__(
        self,
        state: SearchState,
        *,
        budget_left: Callable[[], str | None],
        refresh: Callable[[], None],
    ) -> None:
        self.state = state
        self.ws = state.ws
        self.config = state.config
        self._budget_left = budget_left  # the controller's: a give-up is a trial, so none past it
        self._refresh = refresh  # the controller's: take in what other workers recorded
        self.rng = random.Random(self.config.campaign.seed)
        self.plans: queue.Queue[TrialPlan] = queue.Queue(maxsize=QUEUE_AHEAD)
        self.failed_attempts: dict[int, list[Outcome]] = {}
        self.exhausted: set[Operation] = set()
        self.requests_taken: set[str] = set()  # request ids a plan was made for
        self.parent_behaviour = ParentBehaviour()  # parents' smoke-run digests (controller.search.inert)
        self.gpu_pool: GpuPool | None = None  # the controller's: a GPU smoke tier's runs lease one GPU
        self.stacker = Stacker(self)  # the offline operations on confirmed wins
        self.ablator = Ablator(self)

    def mark_taken(self, request: Request) -> None:
        """A plan for ``request`` exists already (kept from the last start): make no other."""
        with self.state.lock:
            self.requests_taken.add(request.id)

    def seed_plan(self) -> TrialPlan | None:
        """The seed program's first run, unless it has one on the explore tier."""
        if any(c.operation is Operation.SEED and c.tier == self.state.explore for c in self.state.archive):
            return None
        return TrialPlan(operation=Operation.SEED, tier_name=self.state.explore, parent=None)

    def make_plan(self) -> TrialPlan | None:
        """Draw an operation and a parent and get a proposal; None when nothing can be proposed now.
        People's queued requests come first."""
        if self.state.peers.shared:
            self._refresh()
        request = self._next_request()
        if request is not None:
            return self._plan_request(request)
        with self.state.lock:
            try:
                parent = self.state.archive.select_parent(
                    self.rng,
                    self.config.frontier.k,
                    self.config.frontier.child_bonus,
                    self.state.explore,
                    self.state.inflight.children(),
                )
            except LookupError:
                return None
            exclude = frozenset(
                {Operation.HYPOTHESIS, Operation.CONFIRM} | self.exhausted | self._idle_offline()
            )
            try:
                operation = self.config.operations.draw(self.rng, exclude=exclude)
            except ValueError:  # every weighted code operation is exhausted: tuning takes over
                operation = Operation.TUNE
            reservation = self.state.inflight.reserve(parent.trial)
            context = build_context(
                store=self.ws.store,
                archive=self.state.archive,
                parent=parent,
                entry=self.ws.entry,
                operation=operation,
                failed_attempts=tuple(self.failed_attempts.get(parent.trial, ())),
                tier=self.state.explore,
                workspace=self.ws,
            )
        if operation in (Operation.STACK, Operation.ABLATE):  # they choose their own wins
            reservation.release()
            return self.stacker.plan() if operation is Operation.STACK else self.ablator.plan()
        proposer = self.ws.proposers[operation]
        if proposer.name == "knobs":  # no code proposer configured: the draw becomes a tuning trial
            operation = Operation.TUNE
        try:
            proposal = proposer.propose(context, self._check_program(parent))
        except ProposerExhausted:
            reservation.release()
            # Plans made earlier may still be queued, so say what changes from here, not "done".
            self.state.say(
                f"the {proposer.name} proposer has no proposals left; from now on a {operation} draw "
                "becomes a tuning trial (proposals already planned still run)"
            )
            with self.state.lock:
                self.exhausted.add(operation)
            return self.make_plan() if Operation.TUNE not in self.exhausted else None
        except BaseException:  # the LLM is down, or the like: the producer reports it; no child is owed
            reservation.release()
            raise
        if isinstance(proposal, GiveUp):
            reservation.release()
            self._record_give_up(parent, operation, proposal)
            return None
        return TrialPlan(
            operation=operation,
            tier_name=self.state.explore,
            parent=parent,
            proposal=proposal,
            reservation=reservation,
            smoke_skipped=self._skipped_for(proposal),
        )

    def _idle_offline(self) -> set[Operation]:
        """Stack and ablate while nothing is eligible for them (skipped, as hypothesis with an empty
        queue is); only those with weight are looked at, since looking reads the study."""
        weights = self.config.operations.weights()
        idle = set()
        if Operation.STACK in weights and not self.stacker.ready():
            idle.add(Operation.STACK)
        if Operation.ABLATE in weights and not self.ablator.ready():
            idle.add(Operation.ABLATE)
        return idle

    def _check_program(self, parent: Candidate) -> Callable[[str], tuple[str, ...]]:
        """The agent's program check: the static knob table, then (when configured) a CPU smoke run,
        so a crash goes back to the agent as a repair turn instead of costing a trial."""
        parent_source = self.ws.store.files_at(parent.commit)[self.ws.entry]
        try:
            parent_knobs = parse_knob_table(parent_source, filename=self.ws.entry)
        except ValueError:  # an imported program without a table: no default it changes is masked
            parent_knobs = []

        def check(source: str) -> tuple[str, ...]:
            knobs = parse_knob_table(source, filename=self.ws.entry)
            if source != parent_source and self.config.search.preflight_smoke:
                if self._smoke_skip(source):
                    return tuple(k.name for k in knobs)  # a CUDA-only program: its trial says so
                report = self._smoke(source, parent_source)
                if not report.ok:
                    raise ProposalError(
                        f"The program failed its preflight at stage '{report.stage}': {report.reason}\n"
                        f"{report.log_excerpt[-1500:]}"
                    )
                # Behaviourally inert (controller.search.inert): the parent's smoke run, once per parent.
                smoke_env = self._smoke_env(knobs)
                if masked_by_smoke(parent_knobs, knobs, smoke_env):
                    return tuple(k.name for k in knobs)
                parent_digest = self.parent_behaviour.digest(
                    parent.commit, lambda: self._smoke(parent_source, None)
                )
                if parent_digest and report.behaviour == parent_digest:
                    with self.state.lock:
                        self.state.stats.inert += 1
                    raise ProposalError(inert_message(smoke_env))
            return tuple(k.name for k in knobs)

        return check

    def _smoke_skip(self, source: str) -> str:
        """Why ``source`` gets no CPU smoke run ("" when it does): it needs CUDA and the smoke tier
        runs on CPU. The reason travels with its plan (smoke_skipped) into the trial's record."""
        if self.config.tiers.get("smoke").device == "gpu" or not program_needs_cuda(source, self.ws.entry):
            return ""
        return "no preflight smoke run: the program needs CUDA and the smoke tier runs on CPU"

    def _skipped_for(self, proposal: Proposal) -> str:
        source = proposal.files.get(self.ws.entry)
        if source is None or not self.config.search.preflight_smoke:
            return ""
        return self._smoke_skip(source)

    def _smoke(self, source: str, parent_source: str | None):  # -> PreflightReport
        """The smoke tier's run of ``source``; on a GPU smoke tier (a CUDA-only program cannot smoke on
        a CPU) it waits for one of the campaign's GPUs, as a trial would."""
        if self.config.tiers.get("smoke").device == "gpu" and self.gpu_pool is not None:
            with self.gpu_pool.acquire(1) as lease:
                return self._preflight(source, parent_source, lease.gpus)
        return self._preflight(source, parent_source, ())

    def _preflight(self, source: str, parent_source: str | None, gpus: tuple[int, ...]):
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
                smoke_knobs=self._smoke_env(knobs),
                parent_source=parent_source,
                limits=smoke.limits(),
                backend=self.config.sandbox.backend,
                docker_image=self.config.sandbox.image,
                timeout_seconds=smoke.train_seconds + smoke.eval_seconds + smoke.startup_grace_seconds,
                out_dir=Path(tmp) / "out",
                eval_seq_len=smoke.harness_eval_seq_len(),
                gpus=gpus,
            )

    def _smoke_env(self, knobs: list[Knob]) -> dict[str, str]:
        """The smoke tier's settings for a program with ``knobs``, its schedule keyed on steps."""
        return deterministic_smoke(knob_overrides(self.config.tiers.get("smoke"), "smoke", knobs), knobs)

    def _record_not_run(self, request: Request, reason: str, operation: Operation = Operation.SEED) -> None:
        """A request that cannot run here is still a trial: a FAIL with the reason, so it is consumed
        and the reason shows in status and show, never a silent skip."""
        with self.state.lock:
            handle = self.ws.study.ask(
                None, [], {}, tier=self.state.explore, operation=operation, attrs=request_attrs(request)
            )
            self.ws.study.fail(handle, reason)
        self.state.say(f"trial {handle.number}: request {request.id} {reason}")

    def _record_give_up(
        self,
        parent: Candidate,
        operation: Operation,
        give_up: GiveUp,
        request: Request | None = None,
        attrs: TrialAttrs | None = None,
    ) -> None:
        """A proposal that never became a program is still a trial: a FAIL with the reason (``attrs``:
        more to record, e.g. a stack's second parent)."""
        with self.state.lock:
            attrs = (request_attrs(request) if request is not None else TrialAttrs()).merged(
                attrs or TrialAttrs()
            )
            handle = self.ws.study.ask(
                parent, [], {}, tier=self.state.explore, operation=operation, attrs=attrs
            )
            self.ws.study.fail(
                handle,
                f"gave up: {give_up.reason}",
                TrialAttrs(
                    turns=give_up.turns,
                    cost_usd=give_up.usage.cost_usd,
                    tokens=give_up.usage.prompt_tokens + give_up.usage.completion_tokens,
                ),
            )
            write_trial_log(
                self.ws,
                handle.number,
                [f"gave up after {give_up.turns} turns: {give_up.reason}", *give_up.transcript],
            )
            self.failed_attempts.setdefault(parent.trial, []).append(
                Outcome(hypothesis="(no usable proposal)", status="gave_up", note=give_up.reason[:300])
            )
            self.state.stats.gave_up += 1
        self.state.say(
            f"trial {handle.number}: gave up on a proposal for parent {parent.trial}: {give_up.reason.splitlines()[0][:160]}"
        )

    def produce(self) -> None:
        """Producer thread: keep QUEUE_AHEAD plans ready."""
        idle = 0.0
        while not self.state.stopping.is_set():
            if self._budget_left():  # a give-up is a trial too: none past the budget
                self.state.stopping.wait(0.5)
                continue
            try:
                plan = self.make_plan()
            except Exception as exc:  # a harness fault in the agent (LLM down): report and back off
                self.state.say(f"proposal failed: {exc}")
                plan = None
                idle = min(60.0, idle * 2 or 2.0)
            if plan is None:
                self.state.stopping.wait(idle or 0.2)
                continue
            idle = 0.0
            while True:
                if self.state.stopping.is_set():
                    with self.state.lock:
                        self.state.leftover.append(plan)
                    return
                try:
                    self.plans.put(plan, timeout=0.2)
                    break
                except queue.Full:
                    continue

    def smoke_knobs(self, plan: TrialPlan, values, source: str):
        """A knob-only trial gets the same CPU smoke run (a sampled shape can crash: heads ∤ width)."""
        if not self.config.search.preflight_smoke:
            return None
        from sandbox.knobs import rewrite_knob_defaults

        tier_env = knob_overrides(
            self.config.tiers.get(plan.tier_name), plan.tier_name, parse_knob_table(source)
        )
        bake = {n: v for n, v in values.items() if n not in tier_env}
        return self._smoke(rewrite_knob_defaults(source, bake), None)

    # ------------------------------------------------------------------ people's requests

    def _next_request(self) -> Request | None:
        """The oldest queued request no plan has been made for yet (controller.search.requests)."""
        with self.state.lock:
            for request in pending(self.ws.run_dir, self.ws.study.trials()):
                if request.id not in self.requests_taken:
                    self.requests_taken.add(request.id)
                    return request
        return None

    def _request_parent(self, request: Request) -> Candidate | None:
        with self.state.lock:
            if request.parent_trial is not None and request.parent_trial in self.state.archive:
                return self.state.archive.get(request.parent_trial)
            return self.state.archive.best(self.state.explore)

    def _plan_request(self, request: Request) -> TrialPlan | None:
        """One plan for a hypothesis, knob, seed or adopt request; confirm requests go to the urgent queue."""
        if request.kind is RequestKind.ADOPT:
            return self._plan_adopt(request)
        if request.kind is RequestKind.SEED:
            tier = self.config.tiers.get(self.state.explore)
            if request.needs_cuda and tier.device != "gpu":
                self._record_not_run(
                    request,
                    f"not run: the program needs CUDA and the {self.state.explore} tier runs on CPU; "
                    "run it in a campaign whose explore tier has GPUs",
                )
                return None
            program = (self.ws.run_dir / str(request.program)).read_text(encoding="utf-8")
            title = request.title or f"imported program ({request.id})"
            files = {**extra_files_of(self.ws.run_dir, request), self.ws.entry: program}
            proposal = Proposal(hypothesis=title, files=files, proposer="seed")
            return TrialPlan(
                Operation.SEED,
                self.state.explore,
                None,
                proposal,
                request=request,
                published=request.published,
            )
        parent = self._request_parent(request)
        if parent is None:  # nothing scored yet: try again once the seed program has a score
            with self.state.lock:
                self.requests_taken.discard(request.id)
            return None
        if request.kind is RequestKind.CONFIRM:
            target = self.state.archive.get(request.trial) if request.trial in self.state.archive else None
            if target is None:
                self.state.say(
                    f"request {request.id}: trial {request.trial} has no scored candidate; skipped"
                )
                return None
            with self.state.lock:
                have = len(target.seed_val_losses)
                for index in range(request.seeds):
                    self.state.urgent.append(
                        TrialPlan(
                            Operation.CONFIRM,
                            self.config.search.confirm_tier,
                            target,
                            confirm_source=target,
                            seed=BASE_SEED + have + index,
                            request=request,
                        )
                    )
            return None
        if request.kind is RequestKind.KNOBS:
            values = ", ".join(f"{k}={v}" for k, v in request.knob_values.items())
            proposal = Proposal(
                hypothesis=f"Queued knob settings: {values}",
                knob_values=request.knob_values,
                proposer="enqueue",
            )
            reservation = self.state.inflight.reserve(parent.trial)
            return TrialPlan(
                Operation.TUNE, self.state.explore, parent, proposal, request=request, reservation=reservation
            )
        return self._plan_hypothesis(request, parent)

    def _plan_adopt(self, request: Request) -> TrialPlan | None:
        """The port of a foreign program (controller.search.adoption), as a root of its own."""
        source = (self.ws.run_dir / str(request.program)).read_text(encoding="utf-8")
        tier = self.config.tiers.get(self.state.explore)
        if (request.needs_cuda or program_needs_cuda(source, self.ws.entry)) and tier.device != "gpu":
            reason = (
                f"not run: the program needs CUDA and the {self.state.explore} tier runs on CPU; "
                "adopt it in a campaign whose explore tier has GPUs"
            )
            self._record_not_run(request, reason, Operation.ADOPT)
            return None
        proposer = self.ws.proposers[Operation.MUTATE]
        llm_port = None
        if proposer.name == ProposerKind.LLM:
            llm_port = lambda context: proposer.propose(context, self._check_port)  # noqa: E731
        port = port_program(
            source,
            entry=self.ws.entry,
            title=request.title or request.id,
            llm_port=llm_port,
            extra_files=extra_files_of(self.ws.run_dir, request),
        )
        if port.proposal is None:
            self._record_not_run(request, port.not_run, Operation.ADOPT)
            return None
        return TrialPlan(
            Operation.ADOPT,
            self.state.explore,
            None,
            port.proposal,
            request=request,
            adopt_port=port.port,
            smoke_skipped=self._skipped_for(port.proposal) if port.port == "llm" else "",
        )

    def _check_port(self, source: str) -> tuple[str, ...]:
        """An LLM port's program check: the contract statically, then the CPU smoke run when the
        program can run on a CPU (a CUDA-only one is smoke-tested by its trial, with the reason said)."""
        names = check_port(source, self.ws.entry)
        if self.config.search.preflight_smoke and not self._smoke_skip(source):
            report = self._smoke(source, None)
            if not report.ok:
                raise ProposalError(
                    f"The ported program failed its preflight at stage '{report.stage}': {report.reason}\n"
                    f"{report.log_excerpt[-1500:]}"
                )
        return names

    def _plan_hypothesis(self, request: Request, parent: Candidate) -> TrialPlan | None:
        proposer = self.ws.proposers[Operation.HYPOTHESIS]
        if proposer.name == "knobs":
            reason = "a hypothesis in words needs a code proposer: set [agent] proposer = 'llm' (or 'replay')"
            self._record_give_up(parent, Operation.HYPOTHESIS, GiveUp(reason=reason, turns=0), request)
            return None
        with self.state.lock:
            context = build_context(
                store=self.ws.store,
                archive=self.state.archive,
                parent=parent,
                entry=self.ws.entry,
                operation=Operation.HYPOTHESIS,
                human_hypothesis=request.text,
                failed_attempts=tuple(self.failed_attempts.get(parent.trial, ())),
                tier=self.state.explore,
                workspace=self.ws,
            )
            reservation = self.state.inflight.reserve(parent.trial)
        try:
            proposal = proposer.propose(context, self._check_program(parent))
        except ProposerExhausted:
            proposal = GiveUp(reason=f"the {proposer.name} proposer has no proposals left", turns=0)
        except BaseException:
            reservation.release()
            raise
        if isinstance(proposal, GiveUp):
            reservation.release()
            self._record_give_up(parent, Operation.HYPOTHESIS, proposal, request)
            return None
        return TrialPlan(
            Operation.HYPOTHESIS,
            self.state.explore,
            parent,
            proposal,
            request=request,
            reservation=reservation,
            smoke_skipped=self._skipped_for(proposal),
        )
