"""Running programs on the shared remote (``refs/golf/running/<n>``) and shared replay claims, with a
real PostgreSQL study and a real bare git remote; the workers are opened in this process, not run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime

import pytest

from agent.errors import ProposerExhausted
from agent.proposal import ProposalContext
from controller.config import load_campaign
from controller.store.archive import Operation
from controller.store.study import CampaignStudy, TrialHandle, TrialRecord
from controller.store.trial_attrs import TrialAttrs
from controller.workers.peers import WorkerPeers, stale_programs
from controller.workers.study import WorkerIdentity
from controller.workers.worker import open_worker
from tests.controller.campaigns import knob_line
from tests.controller.pg import postgres_url  # noqa: F401 (a fixture)
from tests.controller.test_workers import git, remote_refs, shared_campaign


@pytest.fixture
def two_workers(request, tmp_path, tiny_data, postgres_url) -> Iterator[tuple[WorkerPeers, WorkerPeers]]:  # noqa: F811
    """Workers ``a`` and ``b`` joined to one study (named after the test) and one bare remote."""
    lines = [knob_line(f"line {n}", SMOOTHING=n / 10) for n in range(1, 13)]
    name = request.node.name.removeprefix("test_")[:40]
    toml = shared_campaign(
        tmp_path, tiny_data, postgres_url, name=name, max_trials=50, sleep=0.0, replay=lines
    )
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote))
    config = load_campaign(toml)
    with ExitStack() as stack:
        workers = [
            stack.enter_context(
                open_worker(
                    config,
                    storage=postgres_url,
                    git_remote=str(remote),
                    # heartbeat 0: recovery and sweeps run on every sync, not once per heartbeat
                    identity=WorkerIdentity.new(worker, heartbeat_seconds=0.0, grace_seconds=30.0),
                    say=lambda text: None,
                )
            )
            for worker in ("a", "b")
        ]
        yield workers[0], workers[1]


def start_trial(peers: WorkerPeers, program: str) -> TrialHandle:
    """Ask a trial and lay out its files as the loop does once the run has started."""
    handle = peers.study.ask(None, [], tier="proxy", operation="mutate")
    trial_dir = peers.ws.trial_dir(handle.number)
    (trial_dir / "program").mkdir(parents=True)
    (trial_dir / "program" / peers.ws.entry).write_text(program, encoding="utf-8")
    (trial_dir / "run").mkdir()
    return handle


def running_refs(peers: WorkerPeers) -> set[int]:
    prefix = "refs/golf/running/"
    return {int(r.removeprefix(prefix)) for r in remote_refs(peers.remote.url) if r.startswith(prefix)}


def test_a_running_program_goes_once_its_trial_is_recorded_and_a_running_ones_stays(two_workers):
    a, b = two_workers
    done, crashed, pruned, running = (start_trial(a, f"program {i}\n") for i in range(4))
    assert a.publish_programs() == [done.number, crashed.number, pruned.number, running.number]
    assert running_refs(a) == {done.number, crashed.number, pruned.number, running.number}

    a.study.tell(done, 1.5, {"artifact_bytes": -1.0, "train_seconds": -1.0})
    a.study.fail(crashed, "crashed")
    a.study.prune(pruned, "pruned by the median rule")
    assert a.publish_programs() == []  # finished trials are never published again
    a.after_record(a.ws)
    assert running_refs(a) == {running.number}

    b.before_plan(b.ws)  # another worker's sync keeps the program of a trial still running
    assert running_refs(a) == {running.number}
    a.study.tell(running, 1.4, {"artifact_bytes": -1.0, "train_seconds": -1.0})
    a.stop()  # stopping drops this worker's programs (no record followed this tell)
    assert running_refs(a) == set()


def test_sync_sweeps_what_a_dead_worker_left_but_keeps_a_program_its_rerun_needs(two_workers):
    a, b = two_workers
    recorded, interrupted, running = (start_trial(a, f"program {i}\n") for i in range(3))
    a.publish_programs()
    # Worker a dies after recording `recorded` (the study is told, its program not yet deleted) and
    # in the middle of `interrupted`, whose re-run another worker's recovery queues.
    CampaignStudy.tell(a.study, recorded, 1.5, {})
    (rerun_of,) = CampaignStudy.recover_stale(a.study, lambda n: n != interrupted.number)
    assert rerun_of == interrupted.number

    b.before_plan(b.ws)  # pull, recover (b takes the waiting re-run), sweep
    assert running_refs(b) == {interrupted.number, running.number}
    (plan,) = b.controller.queued_plans()
    rerun = plan.requeued
    assert rerun.requeued_from == interrupted.number
    fetched = b.ws.trial_dir(interrupted.number) / "program" / b.ws.entry
    assert fetched.read_text() == "program 1\n", "the re-run runs the program the dead worker ran"

    trial_dir = b.ws.trial_dir(rerun.number)  # b runs the re-run: its program is published as its own
    (trial_dir / "program").mkdir(parents=True)
    (trial_dir / "program" / b.ws.entry).write_text(fetched.read_text(), encoding="utf-8")
    (trial_dir / "run").mkdir()
    assert b.publish_programs() == [rerun.number]
    b.study.tell(rerun, 1.2, {})
    b.after_record(b.ws)
    b.before_plan(b.ws)
    assert running_refs(b) == {running.number}, "the re-run is done: both of its programs go"


def test_a_trial_set_aside_at_a_stop_is_rerun_elsewhere_with_its_program(two_workers):
    """Worker a stops while a trial is staged (asked, program written, no run yet): the loop sets it
    aside and re-queues it; worker b takes the re-run and gets the program from the remote."""
    a, b = two_workers
    staged = a.study.ask(None, [], tier="proxy", operation="mutate")
    program = a.ws.trial_dir(staged.number) / "program" / a.ws.entry
    program.parent.mkdir(parents=True)
    program.write_text("staged program\n", encoding="utf-8")
    assert a.publish_programs() == []  # not running: never published by the heartbeat
    a.set_aside(a.ws, staged.number)
    a.study.requeue(staged, "not started: the campaign stopped while it waited for a slot")
    assert staged.number not in a.study.owned
    a.stop()
    assert running_refs(a) == {staged.number}, "kept: a waiting re-run needs it"

    b.before_plan(b.ws)
    (plan,) = b.controller.queued_plans()
    assert plan.requeued.requeued_from == staged.number
    fetched = b.ws.trial_dir(staged.number) / "program" / b.ws.entry  # where b's re-run reads it
    assert fetched.read_text() == "staged program\n"


def test_a_program_stays_while_any_rerun_in_its_chain_is_unfinished():
    def record(number: int, state: str, **attrs) -> TrialRecord:
        return TrialRecord(number, state, None, {}, TrialAttrs(**attrs), {}, {}, datetime.now(), None)

    records = [
        record(0, "COMPLETE"),
        record(1, "FAIL"),  # died running; re-run as 2, which died before publishing: re-run as 3
        record(2, "FAIL", requeued_from=1, original_trial=1),
        record(3, "WAITING", requeued_from=2, original_trial=1),
        record(4, "RUNNING"),
        record(5, "PRUNED"),
    ]
    published = {n: f"commit-{n}" for n in (0, 1, 2, 4, 5, 9)}  # 9: not a trial of this study
    assert stale_programs(records, published) == {0: "commit-0", 5: "commit-5"}
    records[3] = record(3, "COMPLETE", requeued_from=2, original_trial=1)
    assert set(stale_programs(records, published)) == {0, 1, 2, 5}


def test_workers_racing_through_one_replay_file_take_each_line_once(two_workers):
    a, b = two_workers
    context = ProposalContext(files={a.ws.entry: "unused by knob-only lines"})
    served: dict[str, list[str]] = {"a": [], "b": []}

    def serve(name: str, peers: WorkerPeers) -> None:
        proposer = peers.ws.proposers[Operation.MUTATE]
        while True:
            try:
                served[name].append(proposer.propose(context, lambda source: ()).hypothesis)
            except ProposerExhausted:
                return

    threads = [threading.Thread(target=serve, args=item) for item in (("a", a), ("b", b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    everything = served["a"] + served["b"]
    assert sorted(everything) == sorted(f"line {n}" for n in range(1, 13)), served
    claims = {r for r in remote_refs(a.remote.url) if r.startswith("refs/golf/claims/replay-")}
    assert len(claims) == 12

    # A worker restarted later (fresh proposer, the claims already fetched) skips every line, no push.
    b.remote.pull()
    pushes_before = b.remote.seconds
    again = type(b.ws.proposers[Operation.MUTATE])(
        b.ws.config.agent.replay_file, claim=lambda n: b.remote.claim(f"replay-{n}")
    )
    with pytest.raises(ProposerExhausted):
        again.propose(context, lambda source: ())
    assert b.remote.seconds == pushes_before
