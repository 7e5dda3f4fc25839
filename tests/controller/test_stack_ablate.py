"""Stack and ablate (controller.search.stacking, .ablation) on the unigram trainer, trial by trial.

Each test drives a real controller one plan at a time (its Planner, Recorder, sandbox, git store and
study): the seed, then hand-made wins on the seed, then their confirm runs, so that the wins are
confirmed parents of record before the planner is asked for a stack or an ablation. The trainer is
deterministic (its seeds change nothing), so a tie is exact and the confirm tier's Welch test is
decided by the means.
"""

from __future__ import annotations

from dataclasses import replace

import openai
import pytest

from agent.ledger import Ledger
from agent.proposal import Operation, Proposal
from agent.proposers import LLMProposer
from controller.config import load_campaign
from controller.search.loop import Controller
from controller.search.trial import TrialPlan
from controller.search.workspace import open_workspace
from controller.store.records import rebuild_archive
from tests.agent.conftest import make_settings
from tests.agent.fake_llm import ScriptedChatServer, completion
from tests.controller.campaigns import UNIGRAM_TRAINER

ENTRY = "unigram_trainer.py"
SEED = UNIGRAM_TRAINER.read_text(encoding="utf-8")
SMOOTHING = 'Knob("SMOOTHING", float, 0.5,'
STEPS = "    steps = 4\n"
LOG_PROBS = "def log_probs(counts: list[int], smoothing: float) -> list[float]:\n"
# Confirm on the explore tier with two seeds; any mean gain wins (the trainer has no noise). On the
# tiny data an effective smoothing of 0.25-0.3 scores best, the seed's 0.5 a little worse.
CONFIRM = {"seeds_to_confirm": 2, "min_delta_nats": 0.0, "p_value": 0.2}


def sharper_by_knob(value: float) -> str:
    """A knob change that lowers the BPB, and a code hunk far from it that changes nothing scored
    (the counts are the same whatever the number of logging steps)."""
    return SEED.replace(SMOOTHING, f'Knob("SMOOTHING", float, {value},').replace(STEPS, "    steps = 2\n")


def sharper_by_code(factor: float) -> str:
    """A code change that lowers the BPB: the smoothing scaled inside log_probs."""
    return SEED.replace(LOG_PROBS, f"{LOG_PROBS}    smoothing = {factor} * smoothing\n")


@pytest.fixture
def controller(make_campaign):
    """``controller(stack=1.0)``: a controller on a fresh campaign with that operation mix."""
    opened = []

    def build(**operations: float) -> Controller:
        toml = make_campaign(
            max_trials=None,
            proxy=CONFIRM,
            preflight_smoke=False,
            operations={"mutate": 0.0, "tune": 0.0, "hypothesis": 0.0, "confirm": 0.0, **operations},
        )
        ws = open_workspace(load_campaign(toml), progress=False)
        opened.append(ws)
        ctl = Controller(ws, say=lambda line: None)
        ctl.resume()
        return ctl

    yield build
    for ws in opened:
        ws.close()


@pytest.fixture
def llm_server():
    server = ScriptedChatServer().start()
    yield server
    server.stop()


def execute(ctl: Controller, plan: TrialPlan) -> int:
    """Run one plan as the loop's worker thread would; return its trial number."""
    if plan.reservation is None:
        plan = replace(plan, reservation=ctl.state.inflight.reserve(None))
    plan.reservation.launched()
    before = len(ctl.ws.study.trials())
    ctl.execute(plan, lambda: ())
    return before


def run_urgent(ctl: Controller) -> None:
    """The confirm runs the recorder queued, until none is left."""
    while ctl.state.urgent:
        execute(ctl, ctl.state.urgent.popleft())


def seed_and_wins(ctl: Controller, *programs: tuple[str, str]) -> list[int]:
    """Score the seed, then each (hypothesis, program) as a child of the seed, then their confirm
    runs: every win is judged against the seed, so each is confirmed if it beats it."""
    execute(ctl, TrialPlan(Operation.SEED, "proxy", None))
    seed = ctl.state.archive.get(0)
    numbers = []
    for hypothesis, source in programs:
        proposal = Proposal(hypothesis=hypothesis, files={ENTRY: source})
        numbers.append(execute(ctl, TrialPlan(Operation.MUTATE, "proxy", seed, proposal)))
    run_urgent(ctl)
    for number in numbers:
        assert ctl.state.archive.get(number).confirmed, [t.attrs.status_reason for t in ctl.ws.study.trials()]
    return numbers


@pytest.mark.slow
def test_clean_stack_merges_both_changes_and_records_two_parents(controller):
    ctl = controller(stack=1.0)
    by_knob, by_code = seed_and_wins(
        ctl, ("sharper counts", sharper_by_knob(0.3)), ("smoothing scaled in code", sharper_by_code(0.5))
    )
    archive = ctl.state.archive
    onto, replayed = sorted((archive.get(by_knob), archive.get(by_code)))  # the better one is replayed onto

    plan = ctl.planner.make_plan()
    assert plan is not None and plan.operation is Operation.STACK
    assert (plan.parent.trial, plan.second_parent.trial) == (onto.trial, replayed.trial)
    number = execute(ctl, plan)

    store, study = ctl.ws.store, ctl.ws.study
    attrs = study.trial(number).attrs
    assert (attrs.operation, attrs.parent_trial, attrs.second_parent) == (
        Operation.STACK,
        onto.trial,
        replayed.trial,
    )
    commit = store.commit_of(number)
    info = store.show(commit)
    assert info.parents == (onto.commit, replayed.commit)  # a merge commit: both wins are its parents
    assert info.trailers["Golf-Parent"] == str(onto.trial)
    assert info.trailers["Golf-Second-Parent"] == str(replayed.trial)
    program = store.files_at(commit)[ENTRY]
    # Both changes: the code hunks of each, and the knob the knob-win set.
    assert "    smoothing = 0.5 * smoothing\n" in program and "    steps = 2\n" in program
    assert 'Knob("SMOOTHING", float, 0.3,' in program
    assert study.trial(number).attrs.knob_values["SMOOTHING"] == 0.3
    stack = rebuild_archive(study.trials()).get(number)
    assert stack.second_parent_trial == replayed.trial and stack.val_bpb is not None
    # The pair is not stacked twice: with nothing else to stack, the draw falls back to tuning.
    again = ctl.planner.make_plan()
    assert again is None or again.operation is not Operation.STACK


def conflicting_wins(ctl: Controller) -> tuple[int, int]:
    return seed_and_wins(
        ctl,
        ("smoothing scaled in code by a half", sharper_by_code(0.5)),
        ("smoothing scaled in code by 0.6", sharper_by_code(0.6)),
    )


@pytest.mark.slow
def test_conflicting_stack_without_an_llm_is_recorded_and_never_retried(controller):
    ctl = controller(stack=1.0)
    first, second = conflicting_wins(ctl)

    assert ctl.planner.make_plan() is None  # the conflict is recorded; no plan
    stacks = [t for t in ctl.ws.study.trials() if t.attrs.operation is Operation.STACK]
    assert len(stacks) == 1
    (stack,) = stacks
    assert stack.state == "FAIL"
    assert {stack.attrs.parent_trial, stack.attrs.second_parent} == {first, second}
    assert "stack conflict" in stack.attrs.status_reason and "<<<<<<<" in stack.attrs.status_reason
    assert ctl.ws.store.commit_of(stack.number) is None
    again = ctl.planner.make_plan()  # the pair is tried: stack has nothing left, tuning takes over
    assert again is not None and again.operation is Operation.TUNE
    again.reservation.release()
    assert len([t for t in ctl.ws.study.trials() if t.attrs.operation is Operation.STACK]) == 1


@pytest.mark.slow
def test_conflicting_stack_goes_to_the_llm_as_a_merge_task(controller, llm_server):
    ctl = controller(stack=1.0)
    first, second = conflicting_wins(ctl)
    archive = ctl.state.archive
    onto, replayed = sorted((archive.get(first), archive.get(second)))
    settings = make_settings(llm_server.base_url, repair_turns=0)
    client = openai.OpenAI(base_url=llm_server.base_url, api_key="test-key", max_retries=0, timeout=5.0)
    ctl.ws.proposers[Operation.STACK] = LLMProposer(settings, Ledger(None), client=client)
    ours = ctl.ws.store.files_at(onto.commit)[ENTRY]
    mine = next(line for line in ours.splitlines() if line.startswith("    smoothing = "))
    llm_server.script.append(
        completion(
            "<hypothesis>Both smoothing scalings at once</hypothesis>\n<rationale>the product of both"
            f'</rationale>\n<edit path="{ENTRY}">\n<<<<<<< SEARCH\n{mine}\n=======\n'
            "    smoothing = 0.125 * smoothing\n>>>>>>> REPLACE\n</edit>"
        )
    )

    plan = ctl.planner.make_plan()
    assert plan is not None and plan.operation is Operation.STACK
    assert (plan.parent.trial, plan.second_parent.trial) == (onto.trial, replayed.trial)
    assert plan.proposal.proposer == "llm"
    (request,) = llm_server.requests
    task = request.messages[1]["content"]
    assert "Combine two confirmed improvements" in task
    assert replayed.hypothesis in task and onto.hypothesis in task
    assert "<<<<<<< trial" in task  # the conflict, as git marked it
    number = execute(ctl, plan)
    info = ctl.ws.store.show(ctl.ws.store.commit_of(number))
    assert info.parents == (onto.commit, replayed.commit)
    assert "    smoothing = 0.125 * smoothing\n" in ctl.ws.store.files_at(info.commit)[ENTRY]
    assert ctl.ws.study.trial(number).attrs.second_parent == replayed.trial


@pytest.mark.slow
def test_ablation_drops_an_inert_part_and_keeps_the_one_that_carries_the_gain(controller):
    ctl = controller(ablate=1.0)
    (win,) = seed_and_wins(ctl, ("sharper counts, fewer logged steps", sharper_by_knob(0.2)))
    study, store = ctl.ws.study, ctl.ws.store

    verdicts = {}
    for _ in range(2):
        plan = ctl.planner.make_plan()
        assert plan is not None and plan.operation is Operation.ABLATE and plan.parent.trial == win
        verdicts[plan.ablated_part] = execute(ctl, plan)
        run_urgent(ctl)
    knob_part = next(p for p in verdicts if p.startswith("knob SMOOTHING"))
    code_part = next(p for p in verdicts if p.startswith("code hunk"))
    without_knob, without_code = verdicts[knob_part], verdicts[code_part]
    assert store.read_trailers(store.commit_of(without_code))["Golf-Ablated-Part"] == code_part
    assert "    steps = 4\n" in store.files_at(store.commit_of(without_code))[ENTRY]

    drops = [t.attrs.drops for t in study.trials() if t.attrs.drops is not None]
    assert [(d.ablation, d.win, d.part) for d in drops] == [(without_code, win, code_part)]
    for archive in (ctl.state.archive, rebuild_archive(study.trials())):  # live, and rebuilt on resume
        assert archive.get(without_code).confirmed
        assert archive.get(win).superseded_by == without_code and not archive.get(win).eligible
        assert not archive.get(without_knob).confirmed
        assert archive.best("proxy").trial == without_code  # the smaller change is the program of record
    # Nothing left to ablate: the win is superseded, and an ablation is not ablated again.
    again = ctl.planner.make_plan()
    assert again is None or again.operation is not Operation.ABLATE
