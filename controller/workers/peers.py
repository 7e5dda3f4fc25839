"""The loop's hooks for one ``autogolf worker`` (controller.workers.worker): sync with the peers, recover the dead.

:class:`WorkerPeers` implements controller.search.state's Peers: it pulls the shared git remote before each
parent choice, publishes candidates, notes and the study's frontier after each record, and runs a
heartbeat thread that keeps this session alive in the study and re-queues trials of dead sessions.

Running programs. While a trial runs, its program is published to ``refs/golf/running/<n>`` so that
whichever worker re-runs it after this one dies runs the same program (that worker fetches it when
the re-run is handed to it). A ref is deleted once nobody can need it:

* by its own worker, once the trial is finished in the study and its candidate published;
* by any worker's sync (:meth:`WorkerPeers.sweep`), for trials finished in the study whose worker died
  before deleting, unless an unfinished re-run still needs the program (:func:`stale_programs`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from controller.errors import GitStoreError
from controller.search.state import Peers
from controller.search.workspace import Workspace
from controller.store.records import rebuild_archive
from controller.store.study import TrialHandle, TrialRecord
from controller.workers.remote import SharedRemote
from controller.workers.study import WorkerStudy

if TYPE_CHECKING:
    from controller.search.loop import Controller

log = logging.getLogger(__name__)

_UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)


def stale_programs(records: Iterable[TrialRecord], running: Mapping[int, str]) -> dict[int, str]:
    """The published running programs (trial -> commit) that nobody can need any more: their trial is
    finished in the study, and no unfinished trial re-runs it (a re-run names the trial it replaces in
    ``requeued_from`` and the first of its chain in ``original_trial``; either program may be fetched)."""
    finished: set[int] = set()
    needed: set[int] = set()
    for record in records:
        if record.trial_state not in _UNFINISHED:
            finished.add(record.number)
            continue
        needed.add(record.number)
        needed.update(n for n in (record.attrs.requeued_from, record.attrs.original_trial) if n is not None)
    return {n: c for n, c in running.items() if n in finished and n not in needed}


class WorkerPeers(Peers):
    """The loop's hooks for a worker: pull before planning, publish after recording, recover the dead."""

    shared = True

    def __init__(
        self, ws: Workspace, remote: SharedRemote, study: WorkerStudy, say: Callable[[str], None]
    ) -> None:
        self.ws = ws
        self.remote = remote
        self.study = study
        self.say = say
        self.controller: Controller | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_recovery = 0.0
        self._last_sweep = float("-inf")
        # Publishing and dropping running programs take turns, so a program is never published after
        # its trial's drop was decided (the heartbeat publishes while a trial thread finishes).
        self._programs_lock = threading.Lock()
        self._published: dict[int, str] = {}  # trial -> commit of its refs/golf/running/<trial>
        self._finished: set[int] = set()  # trials this process finished whose program may be published

    def attach(self, controller: Controller) -> None:
        self.controller = controller

    # ------------------------------------------------------------------ hooks

    def before_plan(self, ws: Workspace) -> None:
        self.remote.pull()
        self.recover()
        if time.monotonic() - self._last_sweep >= self.study.identity.heartbeat_seconds:
            self.sweep()

    def after_record(self, ws: Workspace) -> None:
        self.remote.publish(self.frontier)
        self.drop_finished()  # after the publish: the candidate is on the remote before its program goes

    def frontier(self) -> list[int]:
        """The frontier by the shared study, so every worker computes the same ``best/*``."""
        config = self.ws.config
        archive = rebuild_archive(self.study.trials())
        return [c.trial for c in archive.frontier(config.frontier.k, config.search.explore_tier)]

    # ------------------------------------------------------------------ dead workers

    def recover(self) -> list[int]:
        """Re-queue dead sessions' trials and hand this worker's loop the waiting re-runs."""
        recovered: list[int] = []
        if time.monotonic() - self._last_recovery >= self.study.identity.heartbeat_seconds:
            self._last_recovery = time.monotonic()
            recovered = self.study.recover_stale()
            if recovered:
                rerun = {r.attrs.requeued_from for r in self.study.trials()}
                if requeued := [n for n in recovered if n in rerun]:
                    self.say(f"recovered trials {requeued} of a worker that stopped; re-queued")
                if not_rerun := [n for n in recovered if n not in rerun]:
                    self.say(
                        f"failed trials {not_rerun} of a worker that stopped; not re-run (lost their run "
                        "too often, or died before running: see their status_reason)"
                    )
        controller = self.controller
        if controller is not None and (self.study.has_strays() or self.study.waiting_requeues()):
            for plan in controller.adopt_reruns():
                self.say(f"trial {plan.requeued.number}: re-runs trial {plan.requeued.requeued_from}")
        return recovered

    def fetch_rerun_program(self, handle: TrialHandle) -> None:
        """Put the program of the trial ``handle`` re-runs where the loop's re-run looks for it
        (``trials/<original>/program``), from the running program its dead worker published."""
        original = handle.attrs.original_trial
        original = original if original is not None else handle.requeued_from
        target = self.ws.trial_dir(original) / "program" / self.ws.entry
        if target.exists() or handle.requeued_from is None:
            return
        try:  # the handle is taken already: raising here would strand it RUNNING under this session
            self.remote.pull()
        except GitStoreError as exc:
            log.warning("could not pull before fetching trial %s's program: %s", handle.requeued_from, exc)
        # The dead trial's own program first; a re-run that died before publishing left only the first's.
        for number in dict.fromkeys((handle.requeued_from, original)):
            text = self.remote.fetch_program(number, self.ws.entry)
            if text is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
                return
        self.say(f"trial {handle.number}: trial {handle.requeued_from}'s program was never published")

    # ------------------------------------------------------------------ running programs

    def publish_programs(self) -> list[int]:
        """Publish the program of each trial this worker runs (once its run has started)."""
        published = []
        with self._programs_lock:
            for number in sorted(self.study.owned - self._published.keys() - self._finished):
                trial_dir = self.ws.trial_dir(number)
                program = trial_dir / "program" / self.ws.entry
                if (trial_dir / "run").exists() and program.exists():  # run/ follows a complete program/
                    text = program.read_text(encoding="utf-8")
                    self._published[number] = self.remote.publish_program(number, {self.ws.entry: text})
                    published.append(number)
        return published

    def set_aside(self, ws: Workspace, number: int) -> None:
        """Publish the program of trial ``number``, which is re-queued without having run, so that any
        worker can re-run it. It is not this worker's to drop: a sweep deletes it once no re-run
        needs it. An unreachable remote is logged: this worker still holds the program for its own
        next start."""
        program = ws.trial_dir(number) / "program" / ws.entry
        try:
            self.remote.publish_program(number, {ws.entry: program.read_text(encoding="utf-8")})
        except (GitStoreError, OSError) as exc:
            log.warning("could not publish the program of set-aside trial %d: %s", number, exc)

    def finished(self, number: int) -> None:
        """WorkerStudy's hook: trial ``number`` is finished; its program goes at the next drop."""
        with self._programs_lock:
            self._finished.add(number)

    def drop_finished(self) -> list[int]:
        """Delete the running programs of the trials this worker finished; return their numbers.
        A remote that cannot be reached is logged and left to a later drop or another worker's sweep."""
        with self._programs_lock:
            due = {n: c for n, c in self._published.items() if n in self._finished}
            try:
                self.remote.drop_running(due)
            except GitStoreError as exc:
                log.warning("could not delete running programs %s: %s", sorted(due), exc)
                return []
            for number in due:
                del self._published[number]
            # The rest never got published and, no longer owned, never will be.
            self._finished.clear()
        return sorted(due)

    def sweep(self) -> list[int]:
        """Delete the running programs that nobody needs (:func:`stale_programs`) as of the last pull:
        those of workers that died after recording a trial but before deleting its program."""
        self._last_sweep = time.monotonic()
        running = self.remote.running_programs()
        if not running:
            return []
        stale = stale_programs(self.study.trials(), running)
        return self.remote.drop_running(stale)

    # ------------------------------------------------------------------ heartbeat thread

    def start(self) -> None:
        self.study.beat()
        self._thread = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the heartbeat and leave the remote tidy: this worker's programs go, and so do those of
        trials that finished since the last sweep (the last worker to stop leaves none behind)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.drop_finished()
        try:
            self.remote.pull()
            self.sweep()
        except Exception:  # the study or the remote may be why the worker stops: that error comes first
            log.exception("could not sweep running programs on stopping")

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.study.identity.heartbeat_seconds):
            try:
                self.study.beat()
                self.publish_programs()
                self.drop_finished()
                # Here as well as before each plan: a worker busy with urgent confirm runs plans nothing.
                self.recover()
            except Exception:  # a missed beat is retried next time; the grace period covers a few
                log.exception("heartbeat failed")
