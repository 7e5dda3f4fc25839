"""Read-side queries for the morning after: the leaderboard, the campaign's state, one trial in full.

Everything here reads what the loop wrote (the study, the git store, the run folder) and writes
nothing, so it is safe to run while a controller is running. The rows are typed models, shared by the
CLI (tables and ``--json``), the HTML report and the export.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict

from controller.config import CampaignConfig
from controller.errors import ControllerError
from controller.review.steps import StepCount
from controller.search.requests import Request, pending
from controller.store.archive import Archive, Candidate, Operation
from controller.store.gitstore import GitStore
from controller.store.records import rebuild_archive
from controller.store.study import CampaignStudy, TrialRecord, budget_trials
from sandbox.spec import RunStatus

LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class Campaign:
    """A read-only snapshot of one campaign: its config, study trials, archive and git store."""

    config: CampaignConfig
    run_dir: Path
    store: GitStore
    trials: tuple[TrialRecord, ...]
    archive: Archive

    @classmethod
    def open(cls, config: CampaignConfig) -> Campaign:
        """Read the campaign. Raises :class:`ControllerError` when it has never been run."""
        run_dir = config.run_dir.resolve()
        if not (run_dir / "repo" / ".git").is_dir():
            raise ControllerError(
                f"campaign {config.campaign.name!r} has no results in {run_dir}",
                hint="start it first with `autogolf run <campaign.toml>`",
            )
        trials = CampaignStudy.from_config(config).trials()
        return cls(config, run_dir, GitStore(run_dir / "repo"), trials, rebuild_archive(trials))

    @property
    def explore_tier(self) -> str:
        return self.config.search.explore_tier

    def record(self, number: int) -> TrialRecord:
        for record in self.trials:
            if record.number == number:
                return record
        raise ControllerError(
            f"campaign {self.config.campaign.name!r} has no trial {number} (trials 0..{len(self.trials) - 1})",
            hint="see `autogolf leaderboard` or `autogolf status` for trial numbers",
        )

    def candidate(self, number: int) -> Candidate:
        """The scored candidate of trial ``number``; :class:`ControllerError` when it has none."""
        if number in self.archive:
            return self.archive.get(number)
        state = self.record(number).state
        raise ControllerError(
            f"trial {number} is {state} and has no recorded program",
            hint="pick a scored trial from `autogolf leaderboard`",
        )

    def root_of(self, candidate: Candidate) -> Candidate:
        """The seed program this candidate descends from (the campaign may have several roots)."""
        return self.archive.root_of(candidate)

    def lineage(self, candidate: Candidate) -> list[Candidate]:
        """From the root down to ``candidate``."""
        chain = [candidate]
        while chain[-1].parent_trial is not None and chain[-1].parent_trial in self.archive:
            chain.append(self.archive.get(chain[-1].parent_trial))
            if len(chain) > len(self.archive):
                break
        return list(reversed(chain))

    def note(self, candidate: Candidate) -> dict[str, Any]:
        text = self.store.read_note(candidate.commit)
        return json.loads(text) if text else {}

    def confirm_runs(self, trial: int) -> list[TrialRecord]:
        """The extra-seed trials of candidate ``trial``."""
        return [r for r in self.trials if r.attrs.confirm_of == trial]


def std_or_none(values: tuple[float, ...] | list[float]) -> float | None:
    return statistics.stdev(values) if len(values) >= 2 else None


# ---------------------------------------------------------------------- leaderboard


class LeaderboardRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    rank: int
    trial: int
    commit: str
    parent_trial: int | None
    root_trial: int
    operation: str
    tier: str
    status: str
    val_bpb: float  # mean over seeds
    val_bpb_std: float | None  # sample std over seeds; None with one seed
    seeds: int
    seed_bpbs: list[float]
    delta_parent_bpb: float | None
    delta_seed_bpb: float | None  # vs the root program of its lineage
    artifact_bytes: int | None
    headroom_bytes: int | None  # tier limit minus artifact bytes
    train_seconds: float | None
    eval_seconds: float | None
    confirmed: bool
    verified: bool  # passed the full integrity probe
    eligible: bool
    suspicious: str
    hypothesis: str
    self_reported: bool = False  # the program's own score (run as published): shown, never a parent
    steps: StepCount = StepCount()  # reached/planned: "52/80 cut" is not comparable (review.steps)
    second_parent_trial: int | None = None  # a stack's: the win whose change was replayed
    superseded_by: int | None = None  # an ablation dropped a part of its change and took its place


def leaderboard(
    campaign: Campaign, *, tier: str | None = None, limit: int | None = None, include_ineligible: bool = False
) -> list[LeaderboardRow]:
    """Scored candidates of ``tier`` (default: the explore tier), best first by the archive's order.

    Only eligible ones (ok, within the limits, not suspicious) and self-reported ones (a program run
    as published: ranked after the rest, since its score is its own) unless ``include_ineligible``.
    """
    tier = tier or campaign.explore_tier
    shown = (lambda c: True) if include_ineligible else (lambda c: c.eligible or _self_reported_ok(c))
    pool = [c for c in campaign.archive if c.tier == tier and c.val_bpb is not None and shown(c)]
    ranked = sorted(pool)[: limit or None]
    return [leaderboard_row(campaign, c, rank) for rank, c in enumerate(ranked, start=1)]


def leaderboard_row(campaign: Campaign, c: Candidate, rank: int) -> LeaderboardRow:
    """One candidate's row (reads its git note for the eval seconds)."""
    assert c.val_bpb is not None
    parent = campaign.archive.get(c.parent_trial) if c.parent_trial in campaign.archive else None
    root = campaign.root_of(c)
    limit_bytes = campaign.config.tiers.get(c.tier).artifact_bytes
    result = campaign.note(c).get("result", {})
    return LeaderboardRow(
        rank=rank,
        trial=c.trial,
        commit=c.commit,
        parent_trial=c.parent_trial,
        second_parent_trial=c.second_parent_trial,
        superseded_by=c.superseded_by,
        root_trial=root.trial,
        operation=str(c.operation),
        tier=c.tier,
        status=str(c.status),
        val_bpb=c.val_bpb,
        val_bpb_std=std_or_none(c.seed_bpbs),
        seeds=max(1, len(c.seed_bpbs)),
        seed_bpbs=list(c.seed_bpbs),
        delta_parent_bpb=_delta(c, parent),
        delta_seed_bpb=_delta(c, root) if root.trial != c.trial else None,
        artifact_bytes=c.artifact_bytes,
        headroom_bytes=limit_bytes - c.artifact_bytes if c.artifact_bytes is not None else None,
        train_seconds=c.train_seconds,
        eval_seconds=result.get("eval_seconds"),
        confirmed=c.confirmed,
        verified=c.verified,
        eligible=c.eligible,
        suspicious=c.suspicious,
        hypothesis=c.hypothesis,
        self_reported=c.self_reported,
        steps=StepCount.of_candidate(c, step_bound=result.get("step_bound") is True),
    )


def _self_reported_ok(c: Candidate) -> bool:
    return c.self_reported and c.status is RunStatus.OK and c.feasible


def _delta(candidate: Candidate, other: Candidate | None) -> float | None:
    if other is None or other.val_bpb is None or candidate.val_bpb is None:
        return None
    return candidate.val_bpb - other.val_bpb


# ---------------------------------------------------------------------- status


class RunningTrial(BaseModel):
    trial: int
    operation: str
    tier: str
    started: datetime | None
    hypothesis: str


class CampaignStatus(BaseModel):
    campaign: str
    run_dir: Path
    trials_by_state: dict[str, int]
    trials_by_operation: dict[str, int]
    best_of_record: LeaderboardRow | None  # the best confirmed candidate (parent of record)
    best_seen: LeaderboardRow | None  # the best eligible candidate, confirmed or not
    best_self_reported: LeaderboardRow | None = None  # the best program run as published, by its own log
    trials_used: int
    max_trials: int | None
    llm_usd: float
    max_llm_usd: float | None
    first_started: datetime | None
    last_completed: datetime | None
    pending_requests: list[Request]
    waiting_requeues: int
    reruns: int  # trials that re-run one whose run was lost or that a stop set aside
    reruns_given_up: int  # trials not re-run: their run was lost max_reruns + 1 times
    max_reruns: int
    running: list[RunningTrial]
    controller_pid: int | None  # the pid holding controller.lock on this machine, when it is alive


def campaign_status(campaign: Campaign) -> CampaignStatus:
    trials = campaign.trials
    best = campaign.archive.best(campaign.explore_tier)
    incumbent = campaign.archive.incumbent(campaign.explore_tier)
    started = [t.started for t in trials if t.started is not None]
    completed = [t.completed for t in trials if t.completed is not None]
    budget = campaign.config.budget
    reported = sorted(c for c in campaign.archive if c.tier == campaign.explore_tier and _self_reported_ok(c))
    return CampaignStatus(
        campaign=campaign.config.campaign.name,
        run_dir=campaign.run_dir,
        trials_by_state=dict(Counter(t.state for t in trials)),
        trials_by_operation=dict(Counter(str(t.attrs.operation or "?") for t in trials)),
        best_of_record=leaderboard_row(campaign, incumbent, 0) if incumbent else None,
        best_seen=leaderboard_row(campaign, best, 1) if best else None,
        best_self_reported=leaderboard_row(campaign, reported[0], 0) if reported else None,
        trials_used=len(budget_trials(trials)),
        max_trials=budget.max_trials,
        llm_usd=llm_spend(campaign.run_dir),
        max_llm_usd=budget.max_llm_usd,
        first_started=min(started) if started else None,
        last_completed=max(completed) if completed else None,
        pending_requests=pending(campaign.run_dir, trials),
        waiting_requeues=sum(1 for t in trials if t.trial_state is TrialState.WAITING),
        reruns=sum(1 for t in trials if t.attrs.requeued_from is not None),
        reruns_given_up=sum(1 for t in trials if t.trial_state is TrialState.FAIL and t.attrs.gave_up),
        max_reruns=campaign.config.study.max_reruns,
        running=[
            RunningTrial(
                trial=t.number,
                operation=str(t.attrs.operation or ""),
                tier=t.attrs.tier,
                started=t.started,
                hypothesis=t.attrs.hypothesis,
            )
            for t in trials
            if t.trial_state is TrialState.RUNNING
        ],
        controller_pid=_live_controller(campaign.run_dir),
    )


def llm_spend(run_dir: Path) -> float:
    """Dollars spent on LLM calls, from the campaign's ledger (0 when there is none)."""
    path = run_dir / "ledger.jsonl"
    if not path.exists():
        return 0.0
    from agent.ledger import Ledger  # the ledger's own reader, so both agree on the format

    return Ledger.load(path).total_cost_usd


def _live_controller(run_dir: Path) -> int | None:
    """The pid of the process holding controller.lock on this machine, or None.

    Read from ``/proc/locks`` rather than by taking the lock: taking it, even briefly, could make a
    controller that starts at that moment fail. Where /proc/locks is missing, the pid written in the
    file counts when that process exists (a weaker test: the file keeps the last holder's pid).
    """
    lock = run_dir / "controller.lock"
    try:
        inode = lock.stat().st_ino
        pid_text = lock.read_text().strip()
    except OSError:
        return None
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return _pid_if_alive(pid_text)
    for line in table.splitlines():
        fields = line.split()  # 1: FLOCK  ADVISORY  WRITE 452 00:2d:12345 0 EOF
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            return int(fields[4])
    return None


def _pid_if_alive(text: str) -> int | None:
    try:
        pid = int(text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return None
    except PermissionError:
        return int(text)
    return pid


# ---------------------------------------------------------------------- one trial


class TrialDetail(BaseModel):
    trial: int
    state: str
    operation: str
    tier: str
    status: str
    status_reason: str
    hypothesis: str
    rationale: str
    proposer: str
    request_id: str | None
    parent_trial: int | None
    second_parent_trial: int | None = None  # a stack's: the win whose change was replayed onto the parent
    ablated_part: str | None = None  # an ablation's: the part of the parent's change left out
    superseded_by: int | None = None  # the ablation that took its place as the program of record
    commit: str | None
    self_reported: bool = False  # val_bpb is the program's own log line (run as published)
    adoption: str = ""  # an adopt trial's check: harness vs printed BPB (controller.search.adoption)
    smoke_skipped: str = ""  # why no preflight smoke run checked the program
    lineage: list[tuple[int, str, float | None]]  # (trial, hypothesis, val_bpb), root first
    val_bpb: float | None
    val_bpb_std: float | None
    seed_bpbs: list[float]
    artifact_bytes: int | None
    train_seconds: float | None
    eval_seconds: float | None
    confirmed: bool
    verified: bool
    suspicious: str
    failed_check: str | None  # the integrity check that failed it, if one did
    integrity: list[str]  # one line per integrity probe it passed
    knob_values: dict[str, str]
    steps: StepCount = StepCount()  # of this trial's own run (a confirm run's too)
    cost_usd: float | None
    diff: str  # against the parent (empty for a root)
    log_tail: str


def trial_detail(campaign: Campaign, number: int, *, log_lines: int = LOG_TAIL_LINES) -> TrialDetail:
    """Everything known about trial ``number``. Raises :class:`ControllerError` when there is no such trial."""
    record = campaign.record(number)
    attrs = record.attrs
    candidate = campaign.archive.get(number) if number in campaign.archive else None
    parent_trial = attrs.parent_trial
    parent_commit = attrs.parent_commit
    lineage = campaign.lineage(candidate) if candidate else []
    result = campaign.note(candidate).get("result", {}) if candidate else {}
    confirm = attrs.operation is Operation.CONFIRM
    run_result = result if not confirm and result else _run_result(campaign, number)
    if candidate is not None and candidate.parent_trial is not None and parent_commit:
        diff = campaign.store.diff(parent_commit, candidate.commit)
    else:
        diff = _unrecorded_diff(campaign, number, parent_commit)
    return TrialDetail(
        trial=number,
        state=record.state,
        operation=str(attrs.operation or ""),
        tier=attrs.tier,
        status=str(attrs.status or record.state.lower()),
        status_reason=attrs.status_reason,
        hypothesis=attrs.hypothesis,
        rationale=attrs.rationale,
        proposer=attrs.proposer,
        request_id=attrs.request_id,
        parent_trial=parent_trial,
        second_parent_trial=attrs.second_parent,
        ablated_part=attrs.ablated_part,
        superseded_by=candidate.superseded_by if candidate else None,
        commit=candidate.commit if candidate else None,
        lineage=[(c.trial, c.hypothesis, c.val_bpb) for c in lineage],
        val_bpb=candidate.val_bpb if candidate else attrs.val_bpb,
        val_bpb_std=std_or_none(candidate.seed_bpbs) if candidate else None,
        seed_bpbs=list(candidate.seed_bpbs) if candidate else [],
        artifact_bytes=candidate.artifact_bytes if candidate else None,
        train_seconds=candidate.train_seconds if candidate else None,
        eval_seconds=result.get("eval_seconds"),
        confirmed=candidate.confirmed if candidate else False,
        verified=candidate.verified if candidate else False,
        self_reported=candidate.self_reported if candidate else attrs.published,
        adoption=attrs.adoption.summary() if attrs.adoption is not None else "",
        smoke_skipped=attrs.smoke_skipped,
        suspicious=candidate.suspicious if candidate else "",
        failed_check=str(run_result.get("failed_check") or "") or None,
        integrity=[probe_summary(probe) for probe in run_result.get("probes", [])],
        knob_values={k: str(v) for k, v in (attrs.knob_values or {}).items()},
        steps=StepCount.of_result(run_result),
        cost_usd=attrs.cost_usd,
        diff=diff,
        log_tail=log_tail(campaign.run_dir, number, log_lines),
    )


def probe_summary(probe: dict[str, Any]) -> str:
    """One line for an integrity probe of a result's note (``RunResult.probes``)."""
    return (
        f"{probe.get('probe')} probe: cut at {probe.get('cut', 0):,}, {probe.get('compared', 0):,} NLL values "
        f"compared, {probe.get('changed', 0):,} changed (largest {probe.get('max_abs_change', 0.0):.3g} nats), "
        f"{probe.get('rows_checked', 0)} rows checked, {probe.get('probe_seconds', 0.0):.1f} s"
    )


def _run_result(campaign: Campaign, number: int) -> dict[str, Any]:
    """The RunResult a trial's run wrote (a confirm run's or a failed run's has no note of its own)."""
    path = campaign.run_dir / "trials" / str(number) / "run" / "result.json"
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return result if isinstance(result, dict) else {}


def _unrecorded_diff(campaign: Campaign, number: int, parent_commit: str | None) -> str:
    """A failed trial has no commit, but its program folder shows what was tried."""
    program = campaign.run_dir / "trials" / str(number) / "program"
    if not parent_commit or not program.is_dir():
        return ""
    parent_files = campaign.store.files_at(parent_commit)
    lines: list[str] = []
    for rel in sorted(parent_files):
        path = program / rel
        new = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        lines += difflib.unified_diff(
            parent_files[rel].splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"a/{rel}",
            tofile=f"b/{rel}",
        )
    return "".join(lines)


def log_tail(run_dir: Path, number: int, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of each of the trial's logs, each under a ``==> name <==`` header."""
    trial_dir = run_dir / "trials" / str(number)
    parts = []
    for path in (
        trial_dir / "trial.log",
        trial_dir / "run" / "run.log",
        trial_dir / "run" / "train.log",
        trial_dir / "run" / "eval.log",
        trial_dir / "run" / "probe-prefix.log",
        trial_dir / "run" / "probe-full.log",
    ):
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            parts.append(f"==> {path.relative_to(trial_dir)} <==\n" + "\n".join(text))
    return "\n\n".join(parts)


def diff_between(campaign: Campaign, a: int, b: int) -> str:
    """Unified diff from candidate ``a``'s program to candidate ``b``'s."""
    return campaign.store.diff(campaign.candidate(a).commit, campaign.candidate(b).commit)


def finite_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
