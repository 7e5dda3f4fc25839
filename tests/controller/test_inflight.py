"""The in-flight ledger (controller.search.inflight): every path out of a plan releases it exactly once."""

from __future__ import annotations

import threading

import pytest

from controller.search.inflight import InFlight


def test_a_reservation_counts_a_child_until_released_and_a_launch_until_asked():
    ledger = InFlight()
    first, second, seed = ledger.reserve(3), ledger.reserve(3), ledger.reserve(None)
    assert ledger.children() == {3: 2} and ledger.launching == 0
    first.launched()
    seed.launched()
    assert ledger.launching == 2
    first.asked()  # the study holds it: the budget counts it there, the parent still has the child
    assert ledger.launching == 1 and ledger.children() == {3: 2}
    first.release()
    second.release()
    assert ledger.children() == {} and ledger.launching == 1
    seed.release()  # released before it was asked (the campaign stopped first)
    assert ledger.launching == 0


def test_every_step_happens_once_whichever_exit_paths_repeat_it():
    ledger = InFlight()
    reservation = ledger.reserve(7)
    reservation.launched()
    reservation.launched()
    assert ledger.launching == 1
    for _ in range(3):
        reservation.release()
        reservation.asked()
    assert ledger.children() == {} and ledger.launching == 0
    reservation.launched()  # a released plan never counts again
    assert ledger.launching == 0


def test_children_is_a_copy_the_parent_choice_cannot_corrupt():
    ledger = InFlight()
    ledger.reserve(1)
    view = ledger.children()
    view[1] += 10
    assert ledger.children() == {1: 1}


def test_concurrent_reserve_and_release_leave_nothing_behind():
    ledger = InFlight()

    def churn() -> None:
        for i in range(500):
            r = ledger.reserve(i % 5)
            r.launched()
            r.asked()
            r.release()
            r.release()

    threads = [threading.Thread(target=churn) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledger.children() == {} and ledger.launching == 0


@pytest.mark.slow
def test_the_trial_budget_counts_a_trial_being_asked_once(make_campaign):
    """A trial thread asks the study (the trial exists, RUNNING) before its reservation leaves the
    launch count; a budget read in between counted it twice, and a 4-trial campaign stopped at 3
    ("trial budget reached (4 of 4)"). Both steps happen under the state's lock, so must the read."""
    from controller.config import load_campaign
    from controller.search import Controller, open_workspace

    with open_workspace(load_campaign(make_campaign(max_trials=2)), progress=False) as ws:
        controller = Controller(ws, say=lambda line: None)
        state = controller.state
        reservation = state.inflight.reserve(None)
        reservation.launched()
        seen: list[str | None] = []
        reader = threading.Thread(target=lambda: seen.append(controller.budget_left()))
        with state.lock:  # what Controller._execute does around its ask
            ws.study.ask(None, [], tier="proxy", operation="seed")
            reader.start()
            reader.join(timeout=0.5)  # the budget read runs now unless it waits for the lock
            reservation.asked()
        reader.join(timeout=30)
        assert seen == [None], "one trial of a budget of 2 was counted as two"
        reservation.launched()  # a released-or-asked reservation does not count again
        assert state.inflight.launching == 0 and controller.budget_left() is None
