"""The search loop: plan a trial, run it in the sandbox, record it, and confirm what wins.

* :class:`Controller` (loop.py) runs a campaign; planning.py chooses parents, operations and
  proposals; trial.py runs one plan and records it; slots.py hands out run slots; confirm.py
  re-runs wins with more seeds; prepared.py keeps plans across a restart.
* :func:`open_workspace` (workspace.py) opens a campaign's run folder: config, data, study, git store
  and proposers.
* requests.py is the queue people steer a campaign with (hypotheses, knob settings, seeds, confirms).
"""

from controller.search.loop import Controller, LoopStats, Peers
from controller.search.workspace import Workspace, open_workspace

__all__ = ["Controller", "LoopStats", "Peers", "Workspace", "open_workspace"]
