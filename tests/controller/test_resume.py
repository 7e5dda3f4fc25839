"""Crashes and interruptions: ``kill -9`` mid-trial then resume, a crash between the git record and the
study tell, and Ctrl-C once (finish and record) or twice (kill and record as failed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.config import load_campaign
from controller.store.gitstore import GitStore
from controller.store.study import CampaignStudy
from tests.controller.campaigns import REPO_ROOT, knob_line

SMOOTHINGS = (0.1, 0.2, 0.3, 0.4, 0.6)


def start_controller(toml: Path) -> subprocess.Popen:
    """`autogolf run` in its own session, as a terminal would start it (Ctrl-C reaches its group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "run", str(toml)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "COLUMNS": "240"},
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the controller exited ({process.returncode}) before {path} appeared")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


def finish(process: subprocess.Popen, timeout: float = 60.0) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return output


def open_results(toml: Path) -> tuple[CampaignStudy, GitStore]:
    config = load_campaign(toml)
    return CampaignStudy.from_config(config), GitStore(config.run_dir / "repo")


def kill_9_during_trial(toml: Path, number: int = 1) -> None:
    """Start the controller and SIGKILL it (only it, as the OOM killer would) inside trial ``number``'s run."""
    controller = start_controller(toml)
    try:
        wait_for(load_campaign(toml).run_dir / "trials" / str(number) / "run", controller)
        time.sleep(0.3)  # inside the sandbox run
        os.kill(controller.pid, signal.SIGKILL)
        controller.wait(timeout=10)
    finally:
        finish(controller, timeout=10)


@pytest.mark.slow
def test_kill_9_mid_trial_then_resume_loses_and_duplicates_nothing(make_campaign):
    toml = make_campaign(
        replay=[knob_line(f"smoothing {s}", SMOOTHING=s) for s in SMOOTHINGS],
        max_trials=5,
        proxy_knobs={"SLEEP_SECONDS": 1.5},
    )
    kill_9_during_trial(toml)
    study, store = open_results(toml)
    killed = study.trial(1)
    assert killed.state == "RUNNING"
    assert store.commit_of(1) is None
    killed_hypothesis = killed.attrs.hypothesis

    resumed = start_controller(toml)
    output = finish(resumed, timeout=90)
    assert resumed.returncode == 0, output
    assert "re-queued" in output

    study, store = open_results(toml)
    trials = study.trials()
    assert not [t.number for t in trials if t.state in ("RUNNING", "WAITING")]
    stale = study.trial(1)
    assert stale.state == "FAIL" and "stale" in stale.attrs.status_reason
    reruns = [t for t in trials if t.attrs.requeued_from == 1]
    assert len(reruns) == 1, [(t.number, t.state) for t in trials]
    rerun = reruns[0]
    assert rerun.state == "COMPLETE" and rerun.attrs.hypothesis == killed_hypothesis
    assert rerun.attrs.knob_values["SMOOTHING"] == killed.attrs.knob_values["SMOOTHING"]
    # Git and the study agree: one commit per scored trial, none for the stale one, no number twice.
    recorded = store.recorded_trials()
    scored = {t.number for t in trials if t.attrs.candidate_commit is not None}
    assert set(recorded) == scored == {t.number for t in trials if t.state == "COMPLETE"}
    for number, commit in recorded.items():
        assert store.read_trailers(commit)["Golf-Trial"] == str(number)
        assert json.loads(store.read_note(commit))["result"]["val_bpb"] == study.trial(number).value
    # No replay line ran twice, and the killed one ran by its re-run. (Lines the producer had prepared
    # ahead are lost on a kill: see test_proposals_prepared_ahead_survive_a_stop.)
    replayed = [t.attrs.hypothesis for t in trials if t.state == "COMPLETE" and t.number > 0]
    replayed = [h for h in replayed if h.startswith("smoothing")]
    assert len(replayed) == len(set(replayed))
    assert killed_hypothesis in replayed


@pytest.mark.slow
def test_a_trial_killed_at_the_end_of_the_budget_is_still_rerun_on_resume(make_campaign):
    """The budget already paid for the killed attempt: the re-run must not be stranded by it."""
    toml = make_campaign(
        replay=[knob_line(f"smoothing {s}", SMOOTHING=s) for s in SMOOTHINGS],
        max_trials=2,  # the seed and the one trial that gets killed
        proxy_knobs={"SLEEP_SECONDS": 1.5},
    )
    kill_9_during_trial(toml)

    resumed = start_controller(toml)
    output = finish(resumed, timeout=90)
    assert resumed.returncode == 0, output
    study, _ = open_results(toml)
    trials = study.trials()
    assert not [t.number for t in trials if t.state in ("RUNNING", "WAITING")], output
    reruns = [t for t in trials if t.attrs.requeued_from == 1]
    assert [t.state for t in reruns] == ["COMPLETE"], output
    assert "trial budget reached" in output


def status_of(toml: Path, *options: str) -> str:
    command = [sys.executable, "-m", "controller.cli", "status", str(toml), *options]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_a_trial_killed_mid_run_does_not_use_up_the_trial_budget(make_campaign):
    """The budget counts experiments: a killed attempt (the running trial, and the one staged for the
    slot when there was one) is replaced by its re-run, not added to it."""
    toml = make_campaign(
        replay=[knob_line(f"smoothing {s}", SMOOTHING=s) for s in SMOOTHINGS],
        max_trials=4,
        proxy_knobs={"SLEEP_SECONDS": 1.5},
    )
    kill_9_during_trial(toml)
    study, _ = open_results(toml)
    killed = [t.number for t in study.trials() if t.state == "RUNNING"]
    resumed = start_controller(toml)
    output = finish(resumed, timeout=90)
    assert resumed.returncode == 0, output

    study, _ = open_results(toml)
    trials = study.trials()
    reruns = {t.attrs.requeued_from: t.state for t in trials[len(killed) + 1 :]}
    assert {n: reruns.get(n) for n in killed} == {n: "COMPLETE" for n in killed}, output
    assert sum(t.state == "COMPLETE" for t in trials) == 4, [(t.number, t.state) for t in trials]
    state = json.loads(status_of(toml, "--json"))
    assert (state["trials_used"], state["reruns"], state["reruns_given_up"]) == (4, len(killed), 0)


@pytest.mark.slow
def test_a_trial_whose_run_keeps_being_lost_is_given_up_after_max_reruns(make_campaign):
    """Each start is killed inside the same experiment's run (a program that takes its machine down):
    with ``max_reruns = 1`` it is run twice, then failed for good, and the campaign goes on."""
    toml = make_campaign(
        replay=[knob_line(f"smoothing {s}", SMOOTHING=s) for s in SMOOTHINGS[:3]],
        max_trials=5,
        proxy_knobs={"SLEEP_SECONDS": 1.5, "EVAL_SLEEP_SECONDS": 0.0},  # tuning must not sleep in eval
    )
    with toml.open("a", encoding="utf-8") as handle:  # [study] is the file's last table
        handle.write("max_reruns = 1\n")
    kill_9_during_trial(toml, 1)
    # The next start re-queues the killed trials in number order, trial 1's re-run first: it takes
    # the next trial number and runs first.
    rerun = len(open_results(toml)[0].trials())
    kill_9_during_trial(toml, rerun)
    resumed = start_controller(toml)
    output = finish(resumed, timeout=90)
    assert resumed.returncode == 0, output

    study, _ = open_results(toml)
    trials = study.trials()
    chain = [t for t in trials if t.number == 1 or t.attrs.original_trial == 1]
    assert [(t.number, t.state) for t in chain] == [(1, "FAIL"), (rerun, "FAIL")], output
    assert chain[-1].attrs.gave_up is True and chain[-1].attrs.lost_runs == 1
    assert "lost 2 times" in chain[-1].attrs.status_reason
    assert not [t.number for t in trials if t.state in ("RUNNING", "WAITING")], output
    # The campaign went on past it: later trials ran, none of them its experiment.
    done = [t for t in trials if t.state == "COMPLETE" and t.number > rerun]
    assert done and all(t.attrs.hypothesis != "smoothing 0.1" for t in done), output
    state = json.loads(status_of(toml, "--json"))
    reruns = sum(1 for t in trials if t.attrs.requeued_from is not None)
    given_up = sum(t.attrs.gave_up for t in trials)  # trial 1's chain, and any other run lost twice
    assert given_up >= 1
    assert (state["reruns"], state["reruns_given_up"], state["max_reruns"]) == (reruns, given_up, 1)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_resume_tells_the_study_a_result_that_git_recorded_before_a_crash(
    make_campaign, run_campaign, monkeypatch
):
    """The crash window between the git record and the study tell: the worker dies right before
    ``tell_study`` for trial 1, leaving it RUNNING with its commit and note in the store."""
    import controller.search.recorder as recorder

    toml = make_campaign(
        replay=[knob_line(f"smoothing {s}", SMOOTHING=s) for s in SMOOTHINGS[:2]], max_trials=3
    )
    real_tell = recorder.tell_study

    def die_before_telling_trial_1(ws, handle, plan, result, attrs):
        if handle.number == 1:
            raise SystemExit("simulated kill between record and tell")
        real_tell(ws, handle, plan, result, attrs)

    monkeypatch.setattr(recorder, "tell_study", die_before_telling_trial_1)
    run_campaign(toml)
    monkeypatch.setattr(recorder, "tell_study", real_tell)
    study, store = open_results(toml)
    assert study.trial(1).state == "RUNNING"
    commit = store.commit_of(1)
    assert commit is not None
    noted_bpb = json.loads(store.read_note(commit))["result"]["val_bpb"]

    why, _ = run_campaign(toml)

    study, store = open_results(toml)
    told = study.trial(1)
    assert told.state == "COMPLETE" and told.value == noted_bpb
    assert told.attrs.candidate_commit == commit
    assert not [t for t in study.trials() if t.attrs.requeued_from == 1]  # not re-run
    assert sorted(store.recorded_trials()) == [0, 1, 2]
    assert "trial budget reached" in why


@pytest.mark.slow
def test_ctrl_c_once_finishes_the_running_trial_and_requeues_the_staged_one(make_campaign):
    """One slot: trial 1 runs while trial 2 is staged (asked, program written, waiting for the slot).
    Ctrl-C lets trial 1 finish and be recorded; trial 2 does not start and is re-run first on resume."""
    toml = make_campaign(
        replay=[knob_line(f"smoothing {s}", SMOOTHING=s) for s in SMOOTHINGS],
        max_trials=5,
        proxy_knobs={"SLEEP_SECONDS": 1.5},
    )
    run_dir = load_campaign(toml).run_dir
    controller = start_controller(toml)
    try:
        wait_for(run_dir / "trials" / "1" / "run", controller)
        wait_for(run_dir / "trials" / "2" / "program", controller)  # staged: asked, program written
        time.sleep(0.3)
        os.killpg(controller.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    finally:
        output = finish(controller)
    assert controller.returncode == 0, output
    assert "stopped by the user" in output
    assert (
        "trial 2: mutate on parent 0 [proxy] smoothing 0.2 · not started (the campaign stopped first)"
        in output
    )

    study, store = open_results(toml)
    assert [t.state for t in study.trials()] == ["COMPLETE", "COMPLETE", "FAIL", "WAITING"], output
    assert store.commit_of(1) is not None
    assert study.trial(2).attrs.status_reason.startswith("not started: the campaign stopped")
    assert store.commit_of(2) is None and not (run_dir / "trials" / "2" / "run").exists()

    again = start_controller(toml)
    output = finish(again)
    assert again.returncode == 0, output
    study, store = open_results(toml)
    rerun = [t for t in study.trials() if t.attrs.requeued_from == 2]
    assert [t.state for t in rerun] == ["COMPLETE"], output
    assert rerun[0].number == 3, "the re-run goes first"
    assert store.commit_of(3) is not None
    done = [t.attrs.hypothesis for t in study.trials() if t.state == "COMPLETE"]
    assert done.count("smoothing 0.2") == 1 and done.count("smoothing 0.1") == 1


@pytest.mark.slow
def test_ctrl_c_twice_kills_the_running_trial_and_records_it_as_failed(make_campaign):
    toml = make_campaign(
        replay=[knob_line(f"smoothing {s}", SMOOTHING=s) for s in SMOOTHINGS],
        max_trials=5,
        proxy_knobs={"SLEEP_SECONDS": 2.0},
    )
    run_dir = load_campaign(toml).run_dir
    controller = start_controller(toml)
    try:
        wait_for(run_dir / "trials" / "1" / "run", controller)
        time.sleep(0.3)
        os.killpg(controller.pid, signal.SIGINT)
        time.sleep(0.3)
        os.killpg(controller.pid, signal.SIGINT)
        started = time.monotonic()
    finally:
        output = finish(controller)
    stopped_after = time.monotonic() - started
    assert controller.returncode == 0, output
    assert "stopped by the user" in output

    study, store = open_results(toml)
    killed = study.trial(1)
    assert killed.state == "FAIL", output
    assert "interrupted" in killed.attrs.status_reason
    assert store.commit_of(1) is None
    # and a trial staged for the slot, when the producer had one ready, did not start: re-queued
    assert [t.state for t in study.trials()[2:]] in ([], ["FAIL", "WAITING"])
    assert all(t.attrs.status_reason.startswith("not started") for t in study.trials()[2:3])
    assert stopped_after < 1.5  # killed, not waited out (the run sleeps 2 s)


@pytest.mark.slow
def test_proposals_prepared_ahead_survive_a_stop(make_campaign, tmp_path):
    """A clean stop (Ctrl-C once) and a resume must not skip proposals the producer had prepared."""
    from controller.search.loop import Controller
    from controller.search.workspace import open_workspace

    toml = make_campaign(
        replay=[knob_line(f"smoothing {s}", SMOOTHING=s) for s in SMOOTHINGS],
        # room for the confirm runs that improvements trigger, which also take trials
        max_trials=1 + 3 * len(SMOOTHINGS),
        proxy_knobs={"SLEEP_SECONDS": 0.5},
    )
    for attempt in range(2):
        with open_workspace(load_campaign(toml), progress=False) as ws:
            controller = Controller(ws, say=lambda line: None)
            if attempt == 0:  # stop as soon as the first proposal's trial starts, as Ctrl-C would

                def stop_at_trial_1(line: str, controller: Controller = controller) -> None:
                    if line.startswith("trial 1: mutate"):
                        controller.stop()

                controller.say = stop_at_trial_1
            controller.run()
    study, _ = open_results(toml)
    ran = {t.attrs.hypothesis for t in study.trials() if t.state == "COMPLETE"}
    assert {f"smoothing {s}" for s in SMOOTHINGS} <= ran
