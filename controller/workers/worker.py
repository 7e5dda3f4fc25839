"""Many machines on one campaign (issue 7): ``autogolf worker`` shares one Optuna study and one git remote.

Each worker runs the ordinary :class:`~controller.search.loop.Controller` on its own machine's GPU pool, with
its own run folder and local git store, joined to the others by three pieces:

* the shared study (PostgreSQL), as :class:`~controller.workers.study.WorkerStudy` sees it: trial
  numbers, heartbeats, recovery of dead workers' trials;
* the shared bare git repository (controller.workers.remote): candidates, notes, ``best/*``, claims
  (the seed run, replay lines) and running programs;
* :class:`~controller.workers.peers.WorkerPeers`, the loop's hooks that sync the two.

A replay proposer is shared too: each line of the replay file is served by the one worker that claims
it (``refs/golf/claims/replay-<entry>``), so the study gets each replayed proposal once, not once per
worker (agent.replay, "Shared replay").

``autogolf run`` on one machine stays the zero-configuration case (SQLite and a local repository).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from optuna.trial import TrialState

from controller.errors import ControllerError
from controller.search.loop import Controller
from controller.search.workspace import Workspace, build_proposers, open_workspace
from controller.store.archive import Operation
from controller.store.gitstore import SEED_REF, GitStore
from controller.store.records import rebuild_archive
from controller.store.study import CampaignStudy
from controller.workers.peers import WorkerPeers
from controller.workers.remote import SharedRemote, SharedStore
from controller.workers.study import WorkerIdentity, WorkerStudy

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
    identity = WorkerIdentity.new(name or socket.gethostname(), heartbeat_seconds, grace_seconds)
    started = time.monotonic()
    with open_worker(
        config, storage=storage, git_remote=git_remote, identity=identity, runs_dir=runs_dir, say=say
    ) as peers:
        ws, controller = peers.ws, peers.controller
        assert controller is not None
        say(f"worker {identity.session} on campaign {ws.config.campaign.name}: {ws.run_dir}")
        peers.start()
        try:
            peers.remote.pull()
            _wait_for_seed(controller, peers)
            peers.before_plan(ws)  # the seed and whatever peers recorded meanwhile
            why = controller.run()
        finally:
            peers.stop()
            _write_stats(ws, controller, peers.study, peers.remote, time.monotonic() - started)
    return why


@contextlib.contextmanager
def open_worker(
    config,
    *,
    storage: str,
    git_remote: str,
    identity: WorkerIdentity,
    runs_dir: Path | None = None,
    say: Callable[[str], None] = print,
) -> Iterator[WorkerPeers]:
    """This worker's workspace joined to the shared study and remote, with its controller attached
    (``peers.controller``) but nothing started. Raises as :func:`open_workspace` does, and
    GitStoreError when the remote cannot be reached or holds another campaign's seed."""
    config = worker_config(config, storage, identity.name, runs_dir)
    remote = SharedRemote(GitStore(config.run_dir / "repo"), git_remote)
    remote.adopt_seed()
    with open_workspace(config, progress=False) as ws:
        ws.store = remote.store = SharedStore(ws.store.path)
        remote.store.remote = remote
        remote.publish_seed()
        if config.agent.proposer == "replay":
            ws.proposers = build_proposers(
                config, ws.run_dir, ws.ledger, replay_claim=lambda entry: remote.claim(f"replay-{entry}")
            )
        # Seeded apart per worker name: with the campaign seed alone, every worker drew the same knobs.
        study = WorkerStudy.from_config(config, sampler_salt=identity.name)
        ws.study = study
        peers = WorkerPeers(ws, remote, study, say)
        study.bind(identity, on_requeued=peers.fetch_rerun_program, on_finished=peers.finished)
        peers.attach(Controller(ws, say=say, peers=peers))
        yield peers


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
    study, explore = peers.study, controller.config.search.explore_tier
    waited = time.monotonic()
    while True:
        records = study.trials()
        if any(c.parent_trial is None and c.tier == explore for c in rebuild_archive(records)):
            return
        if study.waiting_requeues() or peers.remote.claim("seed"):
            return
        seeds = [r for r in records if r.attrs.operation is Operation.SEED]
        if not seeds and time.monotonic() - waited > study.identity.grace_seconds:
            return
        failed = (TrialState.FAIL, TrialState.PRUNED)
        if seeds and all(r.trial_state in failed for r in seeds) and not study.waiting_requeues():
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
    """Add ``autogolf worker`` to the typer app (controller.cli.app)."""

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
        from controller.cli.terminal import load, say

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
        say(f"worker stopped: {why}")
