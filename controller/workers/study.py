"""The shared study as one worker sees it: tagged trials, heartbeats, and dead sessions' recovery.

Optuna's relational storage (PostgreSQL) is the shared brain of ``autogolf worker`` (controller.workers.worker):
trial numbers come from it, so two workers never create the same trial or ``cand/<n>`` branch.
:class:`WorkerStudy` tags every trial it asks with the worker's session and keeps a heartbeat per
session in the study's user attributes. Liveness is judged by the *observer's* clock: a session is
dead once its heartbeat counter has not moved for ``grace_seconds`` of watching, so clocks of
different machines never need to agree. A dead session's RUNNING trials are failed and re-queued
(CampaignStudy.recover_stale) by exactly one worker: the one whose change of the trial's state the
storage takes (it refuses a change of a finished trial). A worker restarted under the same name
recognises its previous session's trials as dead at once.

Each worker seeds its sampler with the campaign seed mixed with its name (``sampler_salt``), so two
workers do not draw the same knob settings in the same order.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from optuna.trial import TrialState

from controller.errors import ControllerError
from controller.store.study import CampaignStudy, TrialHandle, TrialRecord
from controller.store.trial_attrs import TrialAttrs

HEARTBEAT_PREFIX = "heartbeat:"  # study user attribute per session: {"name", "beat", ...}


@dataclass(frozen=True)
class WorkerIdentity:
    name: str  # stable across restarts; unique among the campaign's workers
    session: str  # this process
    heartbeat_seconds: float = 10.0
    grace_seconds: float = 60.0

    @classmethod
    def new(cls, name: str, heartbeat_seconds: float = 10.0, grace_seconds: float = 60.0) -> WorkerIdentity:
        if grace_seconds <= 2 * heartbeat_seconds:
            raise ControllerError(
                f"grace {grace_seconds} s must exceed two heartbeats ({heartbeat_seconds} s each)",
                hint="use e.g. --heartbeat-seconds 10 --grace-seconds 60",
            )
        return cls(name, f"{name}-{uuid.uuid4().hex[:8]}", heartbeat_seconds, grace_seconds)


class WorkerStudy(CampaignStudy):
    """The shared study as one worker sees it (call :meth:`bind` before use)."""

    # A re-run tagged with the dead session would look dead until its taker tags it; untagged, it is
    # alive for a grace period from the moment it is taken (see _alive).
    not_inherited = (*CampaignStudy.not_inherited, "worker", "worker_name")

    def bind(
        self,
        identity: WorkerIdentity,
        on_requeued: Callable[[TrialHandle], None] = lambda handle: None,
        on_finished: Callable[[int], None] = lambda number: None,
    ) -> None:
        """``on_requeued(handle)``: a re-run is handed to this worker (fetch its program);
        ``on_finished(n)``: this worker finished trial ``n`` in the study (complete, failed or pruned)."""
        self.identity = identity
        self._on_requeued = on_requeued
        self._on_finished = on_finished
        self.owned: set[int] = set()  # trials this process is running
        self._strays: list[TrialHandle] = []  # a peer's re-queued trial that Optuna handed to ask()
        self._seen: dict[str, tuple[Any, float]] = {}  # session -> (last beat, when it was first seen)
        self._beat = 0
        self._timer = threading.local()
        self._timer_lock = threading.Lock()
        self.storage_seconds = 0.0

    # ------------------------------------------------------------------ asking, tagged

    def ask(self, parent, knobs, fixed=None, *, tier, operation, attrs=None) -> TrialHandle:
        tag = self._tag()
        with self._timed():
            while True:
                handle = super().ask(
                    parent,
                    knobs,
                    fixed,
                    tier=tier,
                    operation=operation,
                    attrs=(attrs or TrialAttrs()).merged(tag),
                )
                if handle.requeued_from is None:
                    self.owned.add(handle.number)
                    return handle
                # Optuna pops WAITING trials first; the loop expects a fresh trial here, so keep the
                # re-queued one for ask_requeued (WorkerPeers turns it into a re-run) and ask again.
                self.set_attrs(handle, tag)
                self.owned.add(handle.number)
                self._strays.append(handle)

    def _tag(self) -> TrialAttrs:
        """Who asked a trial: this session (alive while it beats) and the worker's stable name."""
        return TrialAttrs(worker=self.identity.session, worker_name=self.identity.name)

    def ask_requeued(self) -> TrialHandle | None:
        if self._strays:
            handle: TrialHandle | None = self._strays.pop(0)
        else:
            with self._timed():
                handle = super().ask_requeued()
                if handle is not None:
                    self.set_attrs(handle, self._tag())
                    self.owned.add(handle.number)
        if handle is not None:
            # Whoever runs a re-run needs the program, which the recovering worker may not be.
            self._on_requeued(handle)
        return handle

    def has_strays(self) -> bool:
        return bool(self._strays)

    def tell(self, handle, value, constraints, attrs=None) -> None:
        with self._timed():
            super().tell(handle, value, constraints, attrs)
        self._finished(handle.number)

    def fail(self, handle, reason, attrs=None) -> None:
        with self._timed():
            super().fail(handle, reason, attrs)
        self._finished(handle.number)

    def requeue(self, handle, reason) -> None:
        with self._timed():
            super().requeue(handle, reason)
        self._finished(handle.number)

    def prune(self, handle, reason="pruned") -> None:
        with self._timed():
            super().prune(handle, reason)
        self._finished(handle.number)

    def _finished(self, number: int) -> None:
        self.owned.discard(number)  # first: a program published from now on would outlive its trial
        self._on_finished(number)

    def set_attrs(self, handle, attrs) -> None:
        with self._timed():
            super().set_attrs(handle, attrs)

    def report(self, handle, step, value) -> bool:
        with self._timed():
            return super().report(handle, step, value)

    def trials(self) -> tuple[TrialRecord, ...]:
        with self._timed():
            return super().trials()

    # ------------------------------------------------------------------ liveness

    def beat(self) -> None:
        """Tell the other workers this session is alive (one study user attribute per session)."""
        self._beat += 1
        value = {
            "name": self.identity.name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "beat": self._beat,
        }
        with self._timed():
            self._study.set_user_attr(f"{HEARTBEAT_PREFIX}{self.identity.session}", value)

    def recover_stale(
        self, is_alive: Callable[[int], bool] | None = None, reason: str = "stale: its worker stopped"
    ) -> list[int]:
        """Fail and re-queue the RUNNING trials of dead sessions (the ``is_alive`` argument of the
        single-controller resume path, which calls every RUNNING trial dead, is ignored: here other
        workers' trials are usually alive). Each stale trial is recovered by one worker only."""
        with self._timed():
            running = {t.number: t for t in super().trials() if t.trial_state is TrialState.RUNNING}
            if not running:
                return []
            beats = self._study.user_attrs
            dead = {n for n, t in running.items() if not self._alive(t, beats)}
            if not dead:
                return []
            return super().recover_stale(lambda n: n not in dead, reason)

    def _alive(self, trial: TrialRecord, beats: Mapping[str, Any]) -> bool:
        session = trial.attrs.worker
        now = time.monotonic()
        if session is None:  # asked outside any worker, or its worker died between ask and tag
            started = trial.started.timestamp() if trial.started else 0.0
            return time.time() - started < self.identity.grace_seconds
        if session == self.identity.session:
            return True
        if trial.attrs.worker_name == self.identity.name:
            return False  # our own previous incarnation: this process replaced it
        beat = (beats.get(f"{HEARTBEAT_PREFIX}{session}") or {}).get("beat")
        seen = self._seen.get(session)
        if seen is None or seen[0] != beat:
            self._seen[session] = (beat, now)
            return True
        return now - seen[1] < self.identity.grace_seconds

    @contextlib.contextmanager
    def _timed(self) -> Iterator[None]:
        depth = getattr(self._timer, "depth", 0)
        self._timer.depth = depth + 1
        started = time.perf_counter()
        try:
            yield
        finally:
            self._timer.depth = depth
            if depth == 0:
                with self._timer_lock:
                    self.storage_seconds += time.perf_counter() - started
