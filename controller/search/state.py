"""What the loop's parts share: :class:`SearchState`, the hooks workers plug in (:class:`Peers`) and
the loop's counters (:class:`LoopStats`)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from controller.search.ablation import AblationBook
from controller.search.inflight import InFlight
from controller.store.archive import Archive
from controller.store.records import rebuild_archive

if TYPE_CHECKING:
    from controller.config import CampaignConfig
    from controller.search.confirm import ConfirmBook
    from controller.search.trial import TrialPlan
    from controller.search.workspace import Workspace


class Peers:
    """Hooks for workers sharing one study and one git remote (controller.workers); no-ops alone."""

    shared = False

    def before_plan(self, ws: Workspace) -> None:
        """Bring the local git store up to date with the shared remote."""

    def after_record(self, ws: Workspace) -> None:
        """Publish newly recorded candidates, notes and frontier moves to the shared remote."""

    def set_aside(self, ws: Workspace, number: int) -> None:
        """Trial ``number`` is about to be re-queued without having run: make its program available
        to whichever worker re-runs it."""


@dataclass
class LoopStats:
    started: float = field(default_factory=time.monotonic)
    trials_started: int = 0
    trials_finished: int = 0
    gave_up: int = 0
    running: int = 0
    inert: int = 0  # proposals sent back because their smoke run behaved exactly as the parent's


@dataclass
class SearchState:
    """Shared by the :class:`~controller.search.loop.Controller`, its
    :class:`~controller.search.planning.Planner` and its :class:`~controller.search.recorder.Recorder`.

    ``lock`` guards ``archive``, ``urgent``, ``leftover`` and ``stats``, and every write to the study,
    the git store and the archive happens under it (so a budget read under it sees each trial once:
    asked in the study, or launching in ``inflight``, never both).
    """

    ws: Workspace
    confirms: ConfirmBook
    say: Callable[[str], None] = print
    peers: Peers = field(default_factory=Peers)
    lock: threading.RLock = field(default_factory=threading.RLock)
    archive: Archive = field(default_factory=Archive)
    urgent: deque[TrialPlan] = field(default_factory=deque)  # confirm runs and re-runs go first
    leftover: list[TrialPlan] = field(default_factory=list)  # plans a stop left unstarted (prepared.py)
    inflight: InFlight = field(default_factory=InFlight)
    stats: LoopStats = field(default_factory=LoopStats)
    ablations: AblationBook = field(default_factory=AblationBook)  # ablations awaiting their seeds
    stopping: threading.Event = field(default_factory=threading.Event)  # first Ctrl-C: start nothing new
    interrupt: threading.Event = field(default_factory=threading.Event)  # second Ctrl-C: kill what runs

    @property
    def config(self) -> CampaignConfig:
        return self.ws.config

    @property
    def explore(self) -> str:
        return self.ws.config.search.explore_tier

    def rebuild_archive(self) -> None:
        """Replace the archive with one rebuilt from the study (what other workers recorded too)."""
        with self.lock:
            self.archive = rebuild_archive(self.ws.study.trials())
