"""Plans prepared but not started when the controller stopped, kept for the next start.

A proposal costs LLM money (or a replay line), so a clean stop must not drop the ones the producer had
prepared ahead: they are written to ``runs/<campaign>/prepared.jsonl`` and put first in line on resume.
Plans whose parent is no longer in the archive are dropped with a note (the study is the truth).
Trials already asked of the study (a crashed run, a trial staged when the campaign stopped) are
re-queued in the study instead, and :func:`requeued_plan` turns one back into a plan.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from agent.proposal import Proposal
from controller.search.requests import Request
from controller.search.trial import TrialPlan
from controller.search.workspace import Workspace
from controller.store.archive import Archive, Operation
from controller.store.study import TrialHandle

PREPARED_FILE = "prepared.jsonl"


def save_prepared(run_dir: Path, plans: Iterable[TrialPlan]) -> int:
    """Write the plans that never started (re-queued trials excluded: the study holds those)."""
    lines = [
        json.dumps(
            {
                "operation": str(plan.operation),
                "tier": plan.tier_name,
                "parent_trial": plan.parent.trial if plan.parent is not None else None,
                "proposal": plan.proposal.model_dump(mode="json") if plan.proposal else None,
                "confirm_source": plan.confirm_source.trial if plan.confirm_source else None,
                "seed": plan.seed,
                "request": plan.request.model_dump(mode="json") if plan.request else None,
                "second_parent": plan.second_parent.trial if plan.second_parent else None,
                "ablated_part": plan.ablated_part,
            }
        )
        for plan in plans
        if plan.requeued is None
    ]
    path = run_dir / PREPARED_FILE
    if not lines:
        path.unlink(missing_ok=True)
        return 0
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return len(lines)


def load_prepared(run_dir: Path, archive: Archive, say: Callable[[str], None]) -> list[TrialPlan]:
    """The saved plans, rebuilt against the archive; the file is removed once read."""
    path = run_dir / PREPARED_FILE
    if not path.exists():
        return []
    plans = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            data = json.loads(line)
            parent_trial, source_trial = data["parent_trial"], data["confirm_source"]
            second_trial = data.get("second_parent")  # a stack's; files of earlier versions lack it
            if (
                (parent_trial is not None and parent_trial not in archive)
                or (source_trial is not None and source_trial not in archive)
                or (second_trial is not None and second_trial not in archive)
            ):
                say(f"{path.name}:{number}: its parent is no longer in the archive; dropped")
                continue
            plans.append(
                TrialPlan(
                    operation=Operation(data["operation"]),
                    tier_name=data["tier"],
                    parent=archive.get(parent_trial) if parent_trial is not None else None,
                    proposal=Proposal.model_validate(data["proposal"]) if data["proposal"] else None,
                    confirm_source=archive.get(source_trial) if source_trial is not None else None,
                    seed=int(data["seed"]),
                    request=Request.model_validate(data["request"]) if data["request"] else None,
                    second_parent=archive.get(second_trial) if second_trial is not None else None,
                    ablated_part=data.get("ablated_part"),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            say(f"{path.name}:{number}: unreadable prepared plan ({exc}); dropped")
    path.unlink()
    return plans


def requeued_plan(ws: Workspace, archive: Archive, handle: TrialHandle, explore: str) -> TrialPlan:
    """The plan that re-runs re-queued trial ``handle``: the program its first attempt wrote (under
    ``trials/<original>/program``) on the same parent, or the parent's own code and knobs when the
    program is gone."""
    parent = archive.get(handle.parent_trial) if handle.parent_trial in archive else None
    original = handle.attrs.original_trial
    program = ws.trial_dir(original if original is not None else handle.requeued_from) / "program" / ws.entry
    files = {ws.entry: program.read_text()} if program.exists() else {}
    operation = Operation(handle.operation or "mutate")
    # A root's program is its own (an imported seed); a child's is an edit of a parent still held.
    own_program = parent is not None or operation is Operation.SEED
    proposal = (
        Proposal(
            hypothesis=handle.attrs.hypothesis,
            rationale=handle.attrs.rationale,
            files=files,
            scoring_change=handle.attrs.scoring_change,
        )
        if files and own_program
        else None
    )
    second = handle.attrs.second_parent  # a stack's: its commit is a merge of both parents
    return TrialPlan(
        operation=operation,
        tier_name=handle.tier or explore,
        parent=parent,
        proposal=proposal,
        requeued=handle,
        published=handle.attrs.published,
        second_parent=archive.get(second) if second is not None and second in archive else None,
        ablated_part=handle.attrs.ablated_part,
    )
