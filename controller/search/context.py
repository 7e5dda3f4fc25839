"""What the agent is told about a parent: its program, its result, its lineage, its siblings, the best."""

from __future__ import annotations

import json

from agent.hashing import normalized_source_hash
from agent.proposal import Operation, Outcome, ParentResult, ProposalContext
from controller.store.archive import Archive, Candidate
from controller.store.gitstore import GitStore
from sandbox.spec import RunResult

INSPIRATIONS = 3


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


def parent_result(store: GitStore, candidate: Candidate) -> ParentResult:
    """The parent's numbers from its git note (the full RunResult)."""
    note = store.read_note(candidate.commit)
    result = RunResult.model_validate(json.loads(note)["result"]) if note else None
    if result is None:
        return ParentResult(status=str(candidate.status), val_bpb=candidate.val_bpb)
    curve = result.curve
    picks = (
        [curve[i] for i in sorted({0, len(curve) // 4, len(curve) // 2, 3 * len(curve) // 4, len(curve) - 1})]
        if curve
        else []
    )
    summary = " · ".join(f"step {p.step} loss {p.train_loss:.3f}" for p in picks)
    return ParentResult(
        status=str(result.status),
        val_bpb=result.val_bpb,
        artifact_bytes=result.artifact.total if result.artifact else None,
        train_seconds=result.train_seconds,
        eval_seconds=result.eval_seconds,
        curve_summary=summary,
        log_tail="" if result.counted else result.error_excerpt,
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
) -> ProposalContext:
    """A :class:`ProposalContext` for a child of ``parent``. ``failed_attempts`` are earlier proposals
    on this parent that never ran (gave up, failed preflight), so the agent does not repeat them."""
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
    return ProposalContext(
        operation=operation,
        entry=entry,
        files=files,
        allowed_files=(entry,),
        parent=parent_result(store, parent),
        lineage=tuple(reversed(lineage)),
        tried_from_parent=tried,
        inspirations=inspirations,
        human_hypothesis=human_hypothesis,
        known_source_hashes=known | {normalized_source_hash(files.get(entry, ""))},
    )
