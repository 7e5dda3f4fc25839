"""One trial, from a plan to a recorded result: ask the study, write the program, run it, record it.

Order of writes, chosen so a ``kill -9`` at any point loses nothing and duplicates nothing: the study
trial is asked first (RUNNING), then the sandbox runs, then the git store records the commit and its
note, then the study is told. On restart a RUNNING trial whose commit exists is told from the note;
one without a commit is failed and re-queued (see controller.search.loop).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.proposal import Proposal
from controller.config import CampaignConfig, TierConfig
from controller.search.inert import CLOCK_CAP, STEP_CAP
from controller.search.inflight import Reservation
from controller.search.requests import Request
from controller.search.workspace import Workspace
from controller.store.archive import Archive, Candidate, Operation
from controller.store.records import candidate_attrs, candidate_from_result, result_note
from controller.store.study import TrialHandle, limit_constraints
from controller.store.trial_attrs import TrialAttrs
from sandbox import RunResult, RunSpec, RunStatus, StopRequest
from sandbox import run as sandbox_run
from sandbox.knobs import Knob, KnobValue, parse_knob_table, rewrite_knob_defaults
from sandbox.spec import Plausibility, StepExtent

log = logging.getLogger(__name__)

BASE_SEED = 1337  # explore runs share one seed so candidates differ by their program, not their luck


@dataclass(frozen=True)
class TrialPlan:
    """What one trial will do. ``parent`` is None only for the seed program's first run."""

    operation: Operation
    tier_name: str
    parent: Candidate | None
    proposal: Proposal | None = None  # code change and/or exact knob values; None for seed and confirm
    confirm_source: Candidate | None = None  # confirm: the candidate whose program is re-run
    seed: int = BASE_SEED
    requeued: TrialHandle | None = None  # a trial re-queued after a crash: re-run it as it was
    request: Request | None = None  # the queued request (controller.search.requests) this trial serves
    published: bool = False  # a program without the run contract: run as published, score self-reported
    second_parent: Candidate | None = None  # stack: the win whose change is replayed onto the parent
    ablated_part: str | None = None  # ablate: the part of the parent's change left out
    adopt_port: str = ""  # adopt: "deterministic" or "llm" (controller.search.adoption)
    smoke_skipped: str = (
        ""  # why its preflight smoke run could not run (a CUDA-only program, a CPU smoke tier)
    )
    # its share of the in-flight ledger (controller.search.inflight); None for a re-run of a study trial
    reservation: Reservation | None = field(default=None, compare=False, repr=False)

    @property
    def samples_knobs(self) -> bool:
        """Only tuning samples; a queued knob request sets exactly what it names, like any other plan."""
        return self.operation is Operation.TUNE and not (self.proposal and self.proposal.knob_values)

    @property
    def hypothesis(self) -> str:
        if self.proposal is not None:
            return self.proposal.hypothesis
        if self.operation is Operation.CONFIRM and self.confirm_source is not None:
            return f"confirm trial {self.confirm_source.trial} with seed {self.seed}"
        return "seed program" if self.parent is None else ""


def program_knobs(source: str, entry: str, *, allow_missing: bool = False) -> list[Knob]:
    """The program's knob table; an imported seed may have none (it then runs with its own defaults)."""
    if allow_missing and "KNOBS" not in source:
        return []
    return parse_knob_table(source, filename=entry)


def knob_overrides(tier: TierConfig, tier_name: str, knobs: list[Knob]) -> dict[str, str]:
    """The tier's fixed settings as environment strings (ConfigError when they do not fit the program).

    EVAL_SEQ_LEN is the harness's (the sandbox sets it for every eval), so a program's EVAL_SEQ_LEN knob
    is fixed to it here too: Optuna must not search a setting the harness overrides."""
    env = tier.knob_env(knobs, tier_name)
    if any(k.name == "EVAL_SEQ_LEN" for k in knobs):
        env.setdefault("EVAL_SEQ_LEN", str(tier.harness_eval_seq_len()))
    names = {k.name for k in knobs}
    if tier.step_bound and {CLOCK_CAP, STEP_CAP} <= names:
        # Steps bound the tier: the program's own cap off (its lr warmdown then keys on ITERATIONS,
        # not on time), so what a run trains does not depend on how loaded the machine is.
        env[CLOCK_CAP] = "0"
    return env


def planned_steps(values: Mapping[str, KnobValue]) -> int | None:
    """The steps a run with these knob values is to train (its ITERATIONS), if the program has one."""
    steps = values.get(STEP_CAP)
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def plausibility_for(config: CampaignConfig, archive: Archive, plan: TrialPlan) -> Plausibility:
    """The harness's own numbers a plan's result is judged against: its parent's and its lineage's seed
    program's BPB on the same tier (sandbox.checks.implausibility)."""
    parent = plan.parent
    parent_bpb = parent.val_bpb if parent is not None and parent.tier == plan.tier_name else None
    seed_bpb = archive.seed_bpb(parent, plan.tier_name) if parent is not None else None
    return config.plausibility.for_run(parent_bpb, seed_bpb)


def prepare_program(
    ws: Workspace, plan: TrialPlan, number: int, values: Mapping[str, KnobValue], tier_env: Mapping[str, str]
) -> tuple[Path, dict[str, str]]:
    """Write the trial's program to ``trials/<n>/program`` and return it with the files that differ
    from the parent (what the commit changes). Sampled knob values are baked into the knob table's
    defaults, so the committed program runs as scored with no environment; tier overrides are not."""
    base_commit = _base_commit(ws, plan)
    files = dict(ws.store.files_at(base_commit))
    changed: dict[str, str] = dict(plan.proposal.files) if plan.proposal else {}
    files.update(changed)
    source = files[ws.entry]
    defaults = {k.name: k.default for k in program_knobs(source, ws.entry, allow_missing=plan.parent is None)}
    bake = {n: v for n, v in values.items() if n in defaults and n not in tier_env and v != defaults[n]}
    if bake:
        files[ws.entry] = changed[ws.entry] = rewrite_knob_defaults(source, bake, filename=ws.entry)
    program_dir = ws.trial_dir(number) / "program"
    if program_dir.exists():
        shutil.rmtree(program_dir)
    ws.store.checkout_to(base_commit, program_dir, overlay=changed)
    return program_dir, changed


def _base_commit(ws: Workspace, plan: TrialPlan) -> str:
    if plan.confirm_source is not None:
        return plan.confirm_source.commit
    if plan.parent is not None:
        return plan.parent.commit
    return ws.store.seed_commit


def child_source(ws: Workspace, plan: TrialPlan) -> str:
    if plan.proposal is not None and ws.entry in plan.proposal.files:
        return plan.proposal.files[ws.entry]
    return ws.store.files_at(_base_commit(ws, plan))[ws.entry]


def prune_reason(step: int, loss: float) -> str:
    """Why the study stopped a run at ``step`` (controller.store.study: TierMedianPruner, or a diverged loss)."""
    if not math.isfinite(loss):
        return f"at step {step}: train loss {loss} (diverged)"
    return (
        f"at step {step}: train loss {loss:.4f}, and its best so far trails the median of completed "
        "same-tier trials there"
    )


def run_plan(
    ws: Workspace,
    plan: TrialPlan,
    handle: TrialHandle,
    tier: TierConfig,
    tier_env: Mapping[str, str],
    program_dir: Path,
    gpus: tuple[int, ...],
    interrupt: threading.Event,
    plausibility: Plausibility,
) -> RunResult:
    """Run the program :func:`prepare_program` wrote in the sandbox; report training loss to the
    study as it goes. Seed and confirm runs get the full integrity probe: they are what makes a
    parent of record; so does a change to what the program writes to the scored files."""
    pruned: list[str] = []  # why the pruner stopped the run, once it has

    # Seed and confirm runs are measurements, not guesses: the pruner may not cut them short.
    # An ablation is a measurement too: its score against the win's decides whether a part is kept.
    prunable = plan.operation in (Operation.MUTATE, Operation.TUNE, Operation.HYPOTHESIS, Operation.STACK)

    def on_event(event: Any) -> StopRequest | None:
        if interrupt.is_set():
            return StopRequest.USER
        if ws.study.report(handle, event.step, event.train_loss) and prunable:
            pruned.append(prune_reason(event.step, event.train_loss))
            return StopRequest.PRUNE
        return None

    run_dir = ws.trial_dir(handle.number) / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    scoring = plan.proposal is not None and bool(plan.proposal.scoring_change)
    full_probe = plan.operation in (Operation.SEED, Operation.CONFIRM, Operation.ADOPT) or scoring
    spec = RunSpec(
        program_dir=program_dir,
        entry=ws.entry,
        knobs=dict(tier_env),
        seed=plan.seed,
        nproc=tier.nproc,
        gpus=gpus,
        data=ws.data,
        limits=tier.limits(),
        out_dir=run_dir,
        backend=ws.config.sandbox.backend,
        docker_image=ws.config.sandbox.image,
        label=f"{ws.config.campaign.name}/trial-{handle.number}",
        eval_seq_len=tier.harness_eval_seq_len(),
        phases="published" if plan.published else "split",
        code_bytes=ws.config.sandbox.code_bytes,
        integrity=tier.integrity_settings(full=full_probe),
        plausibility=plausibility,
        planned_steps=planned_steps(handle.knob_values),
        step_bound=tier.step_bound and CLOCK_CAP in tier_env,
    )
    result = sandbox_run(spec, on_event)
    # The sandbox only knows that its caller asked it to stop; say who asked and why.
    if result.stopped_by is StopRequest.PRUNE and pruned:
        result = result.model_copy(update={"reason": pruned[0]})
    elif result.stopped_by is StopRequest.USER:
        result = result.model_copy(update={"reason": "interrupted by the user (second Ctrl-C)"})
    return result


def trailers_for(plan: TrialPlan, result: RunResult) -> dict[str, str]:
    parent = plan.parent.trial if plan.parent is not None else "none"
    return {
        "Golf-Parent": str(parent),
        "Golf-Status": str(result.status),
        "Golf-BPB": f"{result.val_bpb:.6f}" if result.val_bpb is not None else "none",
        "Golf-Bytes": str(result.artifact.total) if result.artifact else "none",
        "Golf-Train-Seconds": f"{result.train_seconds:.1f}" if result.train_seconds is not None else "none",
        "Golf-Seeds": str(plan.seed),
        "Golf-Steps": _steps_trailer(result),
    }


def _steps_trailer(result: RunResult) -> str:
    """Reached/planned steps, "cut" or "over" when they differ (sandbox.steps), e.g. ``52/80 cut``."""
    if result.steps is None:
        return "none"
    planned = f"/{result.steps_planned}" if result.steps_planned is not None else ""
    extent = result.step_extent
    return f"{result.steps}{planned}" + (f" {extent}" if extent not in (None, StepExtent.PLANNED) else "")


def record_candidate(
    ws: Workspace, plan: TrialPlan, handle: TrialHandle, result: RunResult, changed: Mapping[str, str]
) -> Candidate:
    """Commit the candidate (with its note) and build its archive record; idempotent by trial number."""
    parent_commit = plan.parent.commit if plan.parent is not None else ws.store.seed_commit
    rationale = plan.proposal.rationale if plan.proposal else ""
    extra = {
        "trial": handle.number,
        "tier": plan.tier_name,
        "knob_values": dict(handle.knob_values),
        "seed": plan.seed,
    }
    commit = ws.store.record(
        trial=handle.number,
        parent_commit=parent_commit,
        files=dict(changed) or None,
        message_title=plan.hypothesis or f"trial {handle.number}",
        message_body=rationale,
        trailers={**trailers_for(plan, result), **offline_trailers(plan)},
        note=result_note(result, extra),
        second_parent_commit=plan.second_parent.commit if plan.second_parent is not None else None,
    )
    return candidate_from_result(
        trial=handle.number,
        commit=commit,
        parent_trial=plan.parent.trial if plan.parent is not None else None,
        tier=plan.tier_name,
        operation=plan.operation,
        hypothesis=plan.hypothesis,
        result=result,
        knob_values=handle.knob_values,
        second_parent_trial=plan.second_parent.trial if plan.second_parent is not None else None,
    )


def offline_trailers(plan: TrialPlan) -> dict[str, str]:
    """A stack's second parent and an ablation's left-out part, as commit trailers."""
    trailers = {}
    if plan.second_parent is not None:
        trailers["Golf-Second-Parent"] = str(plan.second_parent.trial)
    if plan.ablated_part is not None:
        trailers["Golf-Ablated-Part"] = plan.ablated_part
    return trailers


def offline_attrs(plan: TrialPlan) -> TrialAttrs:
    """What a stack or an ablation records beside the usual: the second parent, the part left out."""
    attrs = TrialAttrs()
    if plan.second_parent is not None:
        attrs = attrs.updated(second_parent=plan.second_parent.trial)
    if plan.ablated_part is not None:
        attrs = attrs.updated(ablated_part=plan.ablated_part)
    return attrs


def tell_study(
    ws: Workspace, handle: TrialHandle, tier_name: str, result: RunResult, attrs: TrialAttrs
) -> None:
    """Finish the study trial to match the result: complete (scored), pruned or failed."""
    attrs = attrs.updated(status=result.status, status_reason=result.reason)
    if result.val_bpb is not None and result.status in (RunStatus.OK, RunStatus.OVER_SIZE):
        bytes_total = result.artifact.total if result.artifact else 0
        constraints = limit_constraints(
            bytes_total, result.train_seconds or 0.0, ws.config.tiers.get(tier_name).limits()
        )
        ws.study.tell(
            handle,
            result.val_bpb,
            constraints,
            attrs.updated(val_loss=result.val_loss, val_bpb=result.val_bpb),
        )
    elif result.status is RunStatus.PRUNED and result.stopped_by is not StopRequest.USER:
        ws.study.set_attrs(handle, attrs)
        ws.study.prune(handle, result.reason or "pruned by the median rule")
    else:
        ws.study.fail(handle, result.reason or str(result.status), attrs)


def confirm_attrs(record: Candidate | None, seed: int) -> TrialAttrs:
    """Attributes of a confirm trial; ``confirm_of`` names the record it adds a seed to, if one exists."""
    if record is None:
        return TrialAttrs(seed=seed)
    return TrialAttrs(seed=seed, confirm_of=record.trial)


def candidate_attr(candidate: Candidate) -> TrialAttrs:
    return TrialAttrs(candidate=candidate_attrs(candidate), candidate_commit=candidate.commit)


def write_trial_log(ws: Workspace, number: int, lines: list[str]) -> None:
    path = ws.trial_dir(number) / "trial.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for line in lines:
            f.write(line.rstrip("\n") + "\n")


def note_extra_seed(ws: Workspace, record: Candidate, number: int, seed: int, result: RunResult) -> None:
    """Append a confirm run's result to the git note of the program it re-ran."""
    note = ws.store.read_note(record.commit)
    data = json.loads(note) if note else {}
    data.setdefault("confirm_runs", []).append(
        {"trial": number, "seed": seed, "result": result.model_dump(mode="json")}
    )
    ws.store.write_note(record.commit, json.dumps(data, indent=2, sort_keys=True))


def tell_from_note(ws: Workspace, number: int, commit: str, default_tier: str) -> None:
    """Finish a RUNNING trial whose commit and note the git store already holds (the controller died
    between recording and telling): the note has the full result, so nothing is run again."""
    attrs = ws.study.trial(number).attrs
    note = json.loads(ws.store.read_note(commit) or "{}")
    result = RunResult.model_validate(note["result"])
    tier_name = attrs.tier or default_tier
    candidate = candidate_from_result(
        trial=number,
        commit=commit,
        parent_trial=attrs.parent_trial,
        tier=tier_name,
        operation=attrs.operation or Operation.MUTATE,
        hypothesis=attrs.hypothesis,
        result=result,
        knob_values=attrs.knob_values or {},
        second_parent_trial=attrs.second_parent,
    )
    told = candidate_attr(candidate)
    if candidate.operation is Operation.SEED and attrs.request_id is None:
        told = told.updated(promoted=True)  # as the recorder marks the campaign's own seed
    tell_study(ws, ws.study.handle_for_running(number), tier_name, result, told)
