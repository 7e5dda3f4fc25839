"""What the agent is told about a parent: its program, its result and how it trained, its lineage,
its siblings, the best, and what the whole campaign has learned (controller.search.findings)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.hashing import normalized_source_hash
from agent.proposal import FindingSummary, Operation, Outcome, ParentResult, ProposalContext, ProposerKind
from controller.config import TierConfig
from controller.search import run_stats
from controller.search.findings import agent_findings, derive_findings
from controller.store.archive import Archive, Candidate
from controller.store.gitstore import GitStore

if TYPE_CHECKING:
    from controller.search.workspace import Workspace

INSPIRATIONS = 3
FINDINGS = 24  # most telling first; the prompt drops more of them when over its token budget


def outcome_of(candidate: Candidate, archive: Archive) -> Outcome:
    delta = None
    if (
        candidate.val_bpb is not None
        and candidate.parent_trial is not None
        and candidate.parent_trial in archive
    ):
        parent_bpb = archive.get(candidate.parent_trial).val_bpb
        if parent_bpb is not None:
            delta = candidate.val_bpb - parent_bpb
    note = candidate.suspicious or ("" if candidate.feasible else "over the artifact limit")
    return Outcome(
        hypothesis=candidate.hypothesis or f"trial {candidate.trial}",
        status=str(candidate.status),
        val_bpb=candidate.val_bpb,
        delta_bpb=delta,
        note=note,
    )


def parent_result(
    store: GitStore, candidate: Candidate, *, archive: Archive | None = None, tier: TierConfig | None = None
) -> ParentResult:
    """The parent's numbers from its git note (the full RunResult); with ``archive``, how it trained
    beside its own parent; with ``tier``, that tier's training budget and byte limit."""
    result = run_stats.result_of(store, candidate.commit)
    if result is None:
        return ParentResult(status=str(candidate.status), val_bpb=candidate.val_bpb)
    curve = result.curve
    picks = (
        [curve[i] for i in sorted({0, len(curve) // 4, len(curve) // 2, 3 * len(curve) // 4, len(curve) - 1})]
        if curve
        else []
    )
    summary = " · ".join(f"step {p.step} loss {p.train_loss:.3f}" for p in picks)
    step_ms = run_stats.ms_per_step(curve)
    training: dict[str, Any] = {
        "ms_per_step": step_ms,
        "tokens_per_second": run_stats.tokens_per_second(step_ms, candidate.knob_values),
        "steps": run_stats.steps_reached(result),
        "steps_planned": run_stats.steps_planned(result),
    }
    if tier is not None:
        training |= {"train_budget_seconds": tier.train_seconds, "artifact_limit_bytes": tier.artifact_bytes}
    grandparent = (
        archive.get(candidate.parent_trial)
        if archive is not None and candidate.parent_trial in archive
        else None
    )
    if grandparent is not None:
        earlier = run_stats.result_of(store, grandparent.commit)
        earlier_curve = earlier.curve if earlier is not None else []
        training |= {
            "grandparent_trial": grandparent.trial,
            "grandparent_val_bpb": grandparent.val_bpb,
            "grandparent_ms_per_step": run_stats.ms_per_step(earlier_curve),
            "curve_vs_grandparent": run_stats.curve_against(curve, earlier_curve),
        }
    return ParentResult(
        status=str(result.status),
        val_bpb=result.val_bpb,
        artifact_bytes=result.artifact.total if result.artifact else None,
        train_seconds=result.train_seconds,
        eval_seconds=result.eval_seconds,
        curve_summary=summary,
        log_tail="" if result.counted else result.error_excerpt,
        **training,
    )


def build_context(
    *,
    store: GitStore,
    archive: Archive,
    parent: Candidate,
    entry: str,
    operation: Operation,
    human_hypothesis: str | None = None,
    failed_attempts: tuple[Outcome, ...] = (),
    tier: str | None = None,
    workspace: Workspace | None = None,
) -> ProposalContext:
    """A :class:`ProposalContext` for a child of ``parent``. ``failed_attempts`` are earlier proposals
    on this parent that never ran (gave up, failed preflight), so the agent does not repeat them.
    With ``workspace`` the context also carries the campaign's findings (from its study and git store)
    and the tier's training budget and byte limit."""
    lineage: list[Outcome] = []
    cursor: Candidate | None = parent
    while cursor is not None:
        lineage.append(outcome_of(cursor, archive))
        cursor = archive.get(cursor.parent_trial) if cursor.parent_trial in archive else None
    tried = tuple(outcome_of(c, archive) for c in archive.children_of(parent.trial)) + failed_attempts
    inspirations = tuple(
        outcome_of(c, archive) for c in archive.frontier(INSPIRATIONS + 1, tier) if c.trial != parent.trial
    )[:INSPIRATIONS]
    files = store.files_at(parent.commit)
    known = frozenset(
        normalized_source_hash(store.files_at(c.commit).get(entry, ""))
        for c in archive.children_of(parent.trial)
    )
    tier_config: TierConfig | None = None
    findings: tuple[FindingSummary, ...] = ()
    if workspace is not None:
        tier_config = workspace.config.tiers.get(tier or workspace.config.search.explore_tier)
        proposer = workspace.proposers.get(operation)
        if proposer is not None and proposer.name != ProposerKind.KNOBS:
            # Only a code proposer reads them (deriving them reads the whole study and some notes).
            trials = workspace.study.trials()
            findings = agent_findings(derive_findings(workspace.config, trials, store), FINDINGS)
    return ProposalContext(
        operation=operation,
        entry=entry,
        files=files,
        allowed_files=(entry,),
        parent=parent_result(store, parent, archive=archive, tier=tier_config),
        findings=findings,
        lineage=tuple(reversed(lineage)),
        tried_from_parent=tried,
        inspirations=inspirations,
        human_hypothesis=human_hypothesis,
        known_source_hashes=known | {normalized_source_hash(files.get(entry, ""))},
    )
