"""Many machines on one campaign (issue 7): ``autogolf worker`` shares one Optuna study and one git remote.

Optuna's relational storage (PostgreSQL) is the shared brain: trial numbers come from it, so two
workers never create the same trial or ``cand/<n>`` branch. A shared bare git repository is the shared
memory (controller.remote). Each worker runs the ordinary :class:`~controller.loop.Controller` on its
own machine's GPU pool, with its own run folder and local git store, plus:

* :class:`WorkerStudy` tags every trial it asks with the worker's session and keeps a heartbeat per
  session in the study's user attributes. Liveness is judged by the *observer's* clock: a session is
  dead once its heartbeat counter has not moved for ``grace_seconds`` of watching, so clocks of
  different machines never need to agree. A dead session's RUNNING trials are failed and re-queued
  (CampaignStudy.recover_stale) by exactly one worker: the one that wins the git claim
  ``refs/golf/claims/recover-<n>``. A worker restarted under the same name recognises its previous
  session's trials as dead at once.
* :class:`WorkerPeers` (the loop's Peers hooks) pulls the remote before each parent choice, publishes
  candidates, notes and the study's frontier after each record, re-runs trials that dead workers left,
  and publishes each running program so that such a re-run runs the same program.

``autogolf run`` on one machine stays the zero-configuration case (SQLite and a local repository).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from controller.errors import ControllerError
from controller.gitstore import SEED_REF, GitStore
from controller.loop import Controller, Peers
from controller.records import rebuild_archive
from controller.remote import SharedRemote, SharedStore
from controller.study import ATTR_ORIGINAL_TRIAL, CampaignStudy, TrialHandle, TrialRecord
from controller.workspace import Workspace, open_workspace

log = logging.getLogger(__name__)

ATTR_WORKER = "worker"  # the session that asked the trial
ATTR_WORKER_NAME = "worker_name"
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

    def bind(
        self,
        identity: WorkerIdentity,
        claim: Callable[[int], bool],
        on_recovered: Callable[[Sequence[TrialRecord]], None] = lambda records: None,
    ) -> None:
        self.identity = identity
        self._claim = claim
        self._on_recovered = on_recovered
        self.owned: set[int] = set()  # trials this process is running
        self._strays: list[TrialHandle] = []  # a peer's re-queued trial that Optuna handed to ask()
        self._seen: dict[str, tuple[Any, float]] = {}  # session -> (last beat, when it was first seen)
        self._beat = 0
        self._timer = threading.local()
        self._timer_lock = threading.Lock()
        self.storage_seconds = 0.0

    # ------------------------------------------------------------------ asking, tagged

    def ask(self, parent, knobs, fixed=None, *, tier, operation, attrs=None) -> TrialHandle:
        tag = {ATTR_WORKER: self.identity.session, ATTR_WORKER_NAME: self.identity.name}
        with self._timed():
            while True:
                handle = super().ask(
                    parent, knobs, fixed, tier=tier, operation=operation, attrs={**(attrs or {}), **tag}
                )
                if handle.requeued_from is None:
                    self.owned.add(handle.number)
                    return handle
                # Optuna pops WAITING trials first; the loop expects a fresh trial here, so keep the
                # re-queued one for ask_requeued (WorkerPeers turns it into a re-run) and ask again.
                self.set_attrs(handle, tag)
                self.owned.add(handle.number)
                self._strays.append(handle)

    def ask_requeued(self) -> TrialHandle | None:
        if self._strays:
            return self._strays.pop(0)
        with self._timed():
            handle = super().ask_requeued()
            if handle is not None:
                self.set_attrs(
                    handle, {ATTR_WORKER: self.identity.session, ATTR_WORKER_NAME: self.identity.name}
                )
                self.owned.add(handle.number)
            return handle

    def has_strays(self) -> bool:
        return bool(self._strays)

    def tell(self, handle, value, constraints, user_attrs=None) -> None:
        with self._timed():
            super().tell(handle, value, constraints, user_attrs)
        self.owned.discard(handle.number)

    def fail(self, handle, reason, user_attrs=None) -> None:
        with self._timed():
            super().fail(handle, reason, user_attrs)
        self.owned.discard(handle.number)

    def prune(self, handle, reason="pruned") -> None:
        with self._timed():
            super().prune(handle, reason)
        self.owned.discard(handle.number)

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

    def recover_stale(self, is_alive: Callable[[int], bool] | None = None) -> list[int]:
        """Fail and re-queue the RUNNING trials of dead sessions (the ``is_alive`` argument of the
        single-controller resume path, which calls every RUNNING trial dead, is ignored: here other
        workers' trials are usually alive). Each stale trial is recovered by one worker only."""
        with self._timed():
            running = {t.number: t for t in super().trials() if t.state == "RUNNING"}
            if not running:
                return []
            beats = self._study.user_attrs
            dead = {n for n, t in running.items() if not self._alive(t, beats)}
            claimed = {n for n in dead if self._claim(n)}
            recovered = super().recover_stale(lambda n: n not in claimed)
        if recovered:
            self._on_recovered([running[n] for n in recovered])
        return recovered

    def _alive(self, trial: TrialRecord, beats: Mapping[str, Any]) -> bool:
        session = trial.user_attrs.get(ATTR_WORKER)
        now = time.monotonic()
        if session is None:  # asked outside any worker, or its worker died between ask and tag
            started = trial.started.timestamp() if trial.started else 0.0
            return time.time() - started < self.identity.grace_seconds
        if session == self.identity.session:
            return True
        if trial.user_attrs.get(ATTR_WORKER_NAME) == self.identity.name:
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
        self._published: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_recovery = 0.0

    def attach(self, controller: Controller) -> None:
        self.controller = controller

    # ------------------------------------------------------------------ hooks

    def before_plan(self, ws: Workspace) -> None:
        self.remote.pull()
        self.recover()

    def after_record(self, ws: Workspace) -> None:
        self.remote.publish(self.frontier)

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
                self.say(f"recovered trials {recovered} of a worker that stopped; re-queued")
        controller = self.controller
        if controller is not None and (self.study.has_strays() or self.study.waiting_requeues()):
            with controller.lock:
                controller.archive = rebuild_archive(self.study.trials())
                plans = controller._requeued()
            for plan in plans:
                self.say(f"trial {plan.requeued.number}: re-runs trial {plan.requeued.requeued_from}")
            controller.urgent.extend(plans)
        return recovered

    def materialize(self, records: Sequence[TrialRecord]) -> None:
        """Put each recovered trial's published program where the loop's re-run looks for it."""
        self.remote.pull()
        for record in records:
            original = record.user_attrs.get(ATTR_ORIGINAL_TRIAL, record.number)
            target = self.ws.trial_dir(original) / "program" / self.ws.entry
            text = self.remote.fetch_program(record.number, self.ws.entry)
            if text is not None and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")

    # ------------------------------------------------------------------ heartbeat thread

    def start(self) -> None:
        self.study.beat()
        self._thread = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.study.identity.heartbeat_seconds):
            try:
                self.study.beat()
                self._publish_programs()
                # Here as well as before each plan: a worker busy with urgent confirm runs plans nothing.
                self.recover()
            except Exception:  # a missed beat is retried next time; the grace period covers a few
                log.exception("heartbeat failed")

    def _publish_programs(self) -> None:
        for number in sorted(self.study.owned - self._published):
            trial_dir = self.ws.trial_dir(number)
            program = trial_dir / "program" / self.ws.entry
            if (trial_dir / "run").exists() and program.exists():  # run/ appears once program/ is complete
                self.remote.publish_program(number, {self.ws.entry: program.read_text(encoding="utf-8")})
                self._published.add(number)


# ---------------------------------------------------------------------- the worker command


def worker_config(config, storage: str, name: str, runs_dir: Path | None):
    """The campaign as this worker runs it: the shared storage, and a run folder of its own."""
    base = (runs_dir or config.campaign.runs_dir / "workers" / name).resolve()
    return config.model_copy(
        update={
            "study": config.study.model_copy(update={"storage": storage}),
            "campaign": config.campaign.model_copy(update={"runs_dir": base}),
        }
    )


def run_worker(
    config,
    *,
    storage: str,
    git_remote: str,
    name: str | None = None,
    runs_dir: Path | None = None,
    heartbeat_seconds: float = 10.0,
    grace_seconds: float = 60.0,
    say: Callable[[str], None] = print,
) -> str:
    """Run one worker until the shared budget or the user stops it; return why it stopped."""
    name = name or socket.gethostname()
    identity = WorkerIdentity.new(name, heartbeat_seconds, grace_seconds)
    config = worker_config(config, storage, name, runs_dir)
    remote = SharedRemote(GitStore(config.run_dir / "repo"), git_remote)
    remote.adopt_seed()
    started = time.monotonic()
    with open_workspace(config, progress=False) as ws:
        ws.store = remote.store = SharedStore(ws.store.path)
        remote.store.remote = remote
        remote.publish_seed()
        study = WorkerStudy.from_config(config)
        ws.study = study
        peers = WorkerPeers(ws, remote, study, say)
        study.bind(identity, lambda n: remote.claim(f"recover-{n}"), peers.materialize)
        controller = Controller(ws, say=say, peers=peers)
        peers.attach(controller)
        say(f"worker {identity.session} on campaign {config.campaign.name}: {ws.run_dir}")
        peers.start()
        try:
            remote.pull()
            _wait_for_seed(controller, peers)
            peers.before_plan(ws)  # the seed and whatever peers recorded meanwhile
            why = controller.run()
        finally:
            peers.stop()
            _write_stats(ws, controller, study, remote, time.monotonic() - started)
    return why


def sync_review_copy(config, *, storage: str, git_remote: str) -> Path:
    """Fill the campaign's own run folder's repository from the shared remote, with ``best/*`` set from
    the shared study, so review commands (leaderboard, show, report, export) work on this machine."""
    config = config.model_copy(update={"study": config.study.model_copy(update={"storage": storage})})
    store = SharedStore(config.run_dir.resolve() / "repo")
    remote = SharedRemote(store, git_remote)
    if SEED_REF not in remote.remote_refs_now():
        raise ControllerError(
            f"the shared remote {git_remote} holds no campaign yet", hint="start a worker first"
        )
    remote.adopt_seed()
    seed = config.campaign.seed_program
    store.init({seed.name: seed.read_text(encoding="utf-8")})
    store.remote = remote
    remote.pull()
    archive = rebuild_archive(CampaignStudy.from_config(config).trials())
    store.set_frontier([c.trial for c in archive.frontier(config.frontier.k, config.search.explore_tier)])
    return store.path


def _wait_for_seed(controller: Controller, peers: WorkerPeers) -> None:
    """Only one worker runs the seed program (the one that claims it); the others wait for its score.
    If the claimant never even asks its seed trial within the grace period, run it here."""
    study, explore = peers.study, controller.explore
    waited = time.monotonic()
    while True:
        records = study.trials()
        if any(c.parent_trial is None and c.tier == explore for c in rebuild_archive(records)):
            return
        if study.waiting_requeues() or peers.remote.claim("seed"):
            return
        seeds = [r for r in records if r.user_attrs.get("operation") == "seed"]
        if not seeds and time.monotonic() - waited > study.identity.grace_seconds:
            return
        if seeds and all(r.state in ("FAIL", "PRUNED") for r in seeds) and not study.waiting_requeues():
            return  # the seed program failed; the loop reports why it cannot go on
        peers.recover()
        time.sleep(min(1.0, study.identity.heartbeat_seconds))


def _write_stats(
    ws: Workspace, controller: Controller, study: WorkerStudy, remote: SharedRemote, wall: float
) -> None:
    """``<run_dir>/worker_stats.json``: what this worker did and what coordination cost it."""
    stats = {
        "session": study.identity.session,
        "trials_finished": controller.stats.trials_finished,
        "wall_seconds": round(wall, 3),
        "storage_seconds": round(study.storage_seconds, 3),
        "git_seconds": round(remote.seconds, 3),
        "push_retries": remote.retries,
    }
    (ws.run_dir / "worker_stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")


def register_worker(app) -> None:
    """Add ``autogolf worker`` to the typer app (controller.cli)."""

    @app.command()
    def worker(
        campaign: Annotated[Path, typer.Argument(help="campaign file, e.g. experiments/demo.toml")],
        storage: Annotated[str, typer.Option(help="shared study, e.g. postgresql://user@host/db")],
        git_remote: Annotated[str, typer.Option(help="shared bare git repository (path or URL)")],
        name: Annotated[
            str | None, typer.Option(help="this worker's unique name (default: hostname)")
        ] = None,
        runs_dir: Annotated[
            Path | None, typer.Option(help="this worker's run folder (default: <runs_dir>/workers/<name>)")
        ] = None,
        heartbeat_seconds: Annotated[
            float, typer.Option(help="how often this worker says it is alive")
        ] = 10.0,
        grace_seconds: Annotated[
            float, typer.Option(help="silence after which a worker's running trials are re-run")
        ] = 60.0,
        sync_only: Annotated[
            bool, typer.Option(help="only copy the shared remote into this machine's run folder, for review")
        ] = False,
    ) -> None:
        """Join a campaign shared by many machines: one study (--storage), one git remote."""
        from controller.terminal import fail, load, say
        from sandbox.errors import HarnessError

        try:
            if sync_only:
                path = sync_review_copy(load(campaign), storage=storage, git_remote=git_remote)
                say(f"review copy of the shared campaign in {path}")
                return
            why = run_worker(
                load(campaign),
                storage=storage,
                git_remote=git_remote,
                name=name,
                runs_dir=runs_dir,
                heartbeat_seconds=heartbeat_seconds,
                grace_seconds=grace_seconds,
                say=say,
            )
        except HarnessError as exc:
            raise fail(exc) from exc
        say(f"worker stopped: {why}")
