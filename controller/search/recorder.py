"""The recorder: a finished run written down, in the order controller.search.trial describes.

For an explore run: the git commit on the parent (trailers) and its note, the study's tell, the
archive, the frontier refs, and any confirm runs the result calls for. For a confirm run: the
program's record on the confirm tier (a new one, or one more seed), the integrity verdict, and the
Welch test that may make a win a parent of record. Every write happens under the state's lock.
"""

from __future__ import annotations

from controller.search.confirm import judge_integrity
from controller.search.state import SearchState
from controller.search.trial import (
    TrialPlan,
    candidate_attr,
    confirm_attrs,
    note_extra_seed,
    record_candidate,
    tell_study,
)
from controller.store.archive import Operation
from controller.store.records import with_confirmed, with_extra_seed
from controller.store.study import TrialHandle
from sandbox import RunResult, RunStatus, StopRequest


class Recorder:
    """Writes each finished trial to the git store, the study and the archive."""

    def __init__(self, state: SearchState) -> None:
        self.state = state

    def record(self, plan: TrialPlan, handle: TrialHandle, result: RunResult, changed) -> None:
        state, ws = self.state, self.state.ws
        with state.lock:
            if result.stopped_by is StopRequest.USER:
                ws.study.fail(handle, result.reason)
                state.say(f"trial {handle.number}: interrupted; recorded as failed")
                return
            if plan.operation is Operation.CONFIRM:
                self._record_confirm(plan, handle, result)
                return
            candidate = record_candidate(ws, plan, handle, result, changed)
            attrs = candidate_attr(candidate)
            if plan.operation is Operation.SEED and plan.request is None:
                attrs = attrs.updated(promoted=True)  # the campaign's seed program: first parent of record
                candidate = with_confirmed(candidate)
            ws.study.set_note(
                handle,
                plan.hypothesis,
                ws.store.diff(plan.parent.commit, candidate.commit) if plan.parent else "",
            )
            tell_study(ws, handle, plan.tier_name, result, attrs)
            state.archive.add(candidate)
            self.sync_frontier()
            state.urgent.extend(state.confirms.after_explore(state.archive, candidate))
        self._announce(handle.number, result)

    def _record_confirm(self, plan: TrialPlan, handle: TrialHandle, result: RunResult) -> None:
        state, ws = self.state, self.state.ws
        source = plan.confirm_source
        assert source is not None
        state.confirms.ran(source)
        record = state.confirms.record_for(state.archive, source)
        attrs = confirm_attrs(record, plan.seed)
        verdict = judge_integrity(state.archive, handle.number, source, record, result)
        attrs = attrs.merged(verdict)
        if verdict.discredits is not None:
            state.say(f"trial {handle.number}: trial {source.trial} is discredited: {result.reason[:200]}")
        record = state.confirms.record_for(state.archive, source)
        if result.status is RunStatus.OK and result.val_bpb is not None and result.val_loss is not None:
            if record is None:  # the program's first run on the confirm tier: a record of its own
                record = record_candidate(ws, plan, handle, result, {})
                if source.confirmed and source.operation is Operation.SEED:
                    record = with_confirmed(record)
                    attrs = attrs.updated(promoted=True)
                attrs = attrs.merged(candidate_attr(record))
            else:
                note_extra_seed(ws, record, handle.number, plan.seed, result)
                record = with_extra_seed(record, result.val_bpb, result.val_loss)
            state.archive.add(record)
        for winner, verdict in state.confirms.judge(state.archive):
            attrs = attrs.updated(promotes=winner.trial)
            state.archive.add(with_confirmed(winner))
            state.say(f"trial {handle.number}: {verdict}")
        tell_study(ws, handle, plan.tier_name, result, attrs)
        self.sync_frontier()
        self._announce(handle.number, result)

    def sync_frontier(self) -> None:
        """Point ``best/*`` at the archive's frontier and let the peers publish it."""
        state = self.state
        frontier = [c.trial for c in state.archive.frontier(state.config.frontier.k, state.explore)]
        if frontier:
            state.ws.store.set_frontier(frontier)
        state.peers.after_record(state.ws)

    def _announce(self, number: int, result: RunResult) -> None:
        best = self.state.archive.best(self.state.explore)
        score = f"bpb {result.val_bpb:.4f}" if result.val_bpb is not None else result.reason[:120]
        best_text = (
            f" · best {best.val_bpb:.4f} (trial {best.trial})" if best and best.val_bpb is not None else ""
        )
        self.state.say(f"trial {number}: {result.status} {score}{best_text}")
