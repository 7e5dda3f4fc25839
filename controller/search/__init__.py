"""The search loop: plan a trial, run it in the sandbox, record it, and confirm what wins.

* :class:`Controller` (loop.py) runs a campaign: budgets, resume, scheduling, executing a trial.
  :class:`Planner` (planning.py) chooses parents, operations and proposals; :class:`Recorder`
  (recorder.py) writes results down; :class:`SearchState` (state.py) is what they share, with the
  in-flight ledger (:class:`InFlight`, inflight.py). trial.py holds the steps of one trial;
  slots.py hands out run slots; confirm.py re-runs wins with more seeds; prepared.py keeps plans
  across a restart. docs/architecture.md draws it.
* :func:`open_workspace` (workspace.py) opens a campaign's run folder: config, data, study, git store
  and proposers.
* requests.py is the queue people steer a campaign with (hypotheses, knob settings, seeds, confirms).
"""

from controller.search.inflight import InFlight, Reservation
from controller.search.loop import Controller
from controller.search.planning import Planner
from controller.search.recorder import Recorder
from controller.search.state import LoopStats, Peers, SearchState
from controller.search.trial import TrialPlan
from controller.search.workspace import Workspace, open_workspace

__all__ = [
    "Controller",
    "InFlight",
    "LoopStats",
    "Peers",
    "Planner",
    "Recorder",
    "Reservation",
    "SearchState",
    "TrialPlan",
    "Workspace",
    "open_workspace",
]
