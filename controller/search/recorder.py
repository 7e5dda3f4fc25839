"""The recorder: a finished run written down, in the order controller.search.trial describes.

For an explore run: the git commit on the parent (trailers) and its note, the study's tell, the
archive, the frontier refs, and any confirm runs the result calls for. For a confirm run: the
program's record on the confirm tier (a new one, or one more seed), the integrity verdict, and the
Welch test that may make a win a parent of record. Every write happens under the state's lock.
"""

from __future__ import annotations

from controller.search.adoption import judge_adoption
from controller.search.confirm import judge_integrity
from controller.search.requests import trials_of
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
from controller.store.records import superseded, with_confirmed, with_extra_seed
from controller.store.study import TrialHandle
from controller.store.trial_attrs import AblationDrop
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
            adoption = None
            if plan.operation is Operation.ADOPT:  # a root only when its printed BPB is the harness's
                tolerance = state.config.search.adopt_bpb_tolerance
                result, adoption = judge_adoption(result, plan.adopt_port, tolerance)
            candidate = record_candidate(ws, plan, handle, result, changed)
            attrs = candidate_attr(candidate)
            if adoption is not None:
                attrs = attrs.updated(adoption=adoption, adopts=self._adopted_trial(plan))
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
            if plan.operation is Operation.ABLATE and plan.ablated_part is not None:
                more, said = state.ablations.after_explore(
                    state.archive, candidate, plan.ablated_part, state.confirms
                )
                state.urgent.extend(more)
                if said:
                    state.say(said)
        self._announce(handle.number, result)

    def _adopted_trial(self, plan: TrialPlan) -> int | None:
        """The published trial an adoption ports: the one its request names, or its seed request's."""
        request = plan.request
        if request is None:
            return None
        if request.trial is not None:
            return request.trial
        if request.source_request is None:
            return None
        made = trials_of(request.source_request, self.state.ws.study.trials())
        return made[0].number if made else None

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
        for ablated in state.ablations.judge(state.archive, state.confirms):
            if ablated.dropped:
                drop = AblationDrop(ablation=ablated.ablation.trial, win=ablated.win.trial, part=ablated.part)
                attrs = attrs.updated(drops=drop)
                state.archive.add(with_confirmed(state.archive.get(drop.ablation)))
                state.archive.add(superseded(state.archive.get(drop.win), drop.ablation))
            state.say(f"trial {handle.number}: {ablated.text}")
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
