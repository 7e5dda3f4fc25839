"""Opening a campaign: its run folder, lock, data, git store, study, ledger and proposers.

``runs/<campaign>/`` holds everything a campaign owns::

    controller.lock     one controller per campaign on one machine (flock, released by the kernel on death)
    repo/               the git store (controller.store.gitstore)
    study.db            the Optuna study (unless [study] storage names another database)
    ledger.jsonl        one line per LLM call (tokens, cost)
    replay.cursor       the replay proposer's position (a worker's: past the lines it or its peers claimed)
    hypotheses.jsonl    queued human ideas (controller.hypotheses)
    trials/<n>/         per trial: program/ (what ran), run/ (the sandbox's files), trial.log
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from agent.ledger import Ledger
from agent.proposer_base import Proposer
from agent.proposers import KnobsProposer, LLMProposer, ReplayProposer
from controller.config import CampaignConfig
from controller.errors import ConfigError, ControllerError
from controller.store.archive import Operation
from controller.store.gitstore import GitStore
from controller.store.study import CampaignStudy
from sandbox import BwrapProbe, probe_bwrap
from sandbox.spec import DataPaths


@dataclass
class Workspace:
    """A campaign's live resources. Close it (or use it as a context manager) to release the lock."""

    config: CampaignConfig
    run_dir: Path
    store: GitStore
    study: CampaignStudy
    data: DataPaths
    ledger: Ledger
    proposers: dict[Operation, Proposer]
    entry: str
    _lock: IO[str] | None = field(default=None, repr=False)

    def trial_dir(self, number: int) -> Path:
        return self.run_dir / "trials" / str(number)

    def close(self) -> None:
        self.store.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_data(config: CampaignConfig, *, progress: bool = True) -> DataPaths:
    """The campaign's data; the embedded demo corpus is built (once, cached) on first use."""
    if config.data.embedded:
        from datatools.prepare import ensure_demo_data

        built = ensure_demo_data(progress=progress)
        return DataPaths(dataset_dir=built.dataset_dir, tokenizer_path=built.tokenizer_path)
    assert config.data.dataset_dir is not None and config.data.tokenizer_path is not None
    for path, what in (
        (config.data.dataset_dir, "data.dataset_dir"),
        (config.data.tokenizer_path, "data.tokenizer_path"),
    ):
        if not path.exists():
            raise ControllerError(
                f"{what} = {path} does not exist",
                hint="run `autogolf data fetch` or `autogolf data build`, or fix the path in the campaign file",
            )
    return DataPaths(dataset_dir=config.data.dataset_dir, tokenizer_path=config.data.tokenizer_path)


def _take_lock(run_dir: Path) -> IO[str]:
    handle = open(run_dir / "controller.lock", "a+")  # noqa: SIM115 (held for the workspace's life)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ControllerError(
            f"another controller (pid {holder}) is running campaign {run_dir.name}",
            hint="wait for it to finish, or stop it; use `autogolf worker` to run several on one study",
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def build_proposers(
    config: CampaignConfig,
    run_dir: Path,
    ledger: Ledger,
    *,
    replay_claim: Callable[[int], bool] | None = None,
) -> dict[Operation, Proposer]:
    """Which proposer serves each operation: tune is always the knobs proposer; mutate and hypothesis
    use the configured one (a replay file, or the LLM), and so does stack when it is the LLM (a
    conflicting merge goes to it). ``replay_claim`` shares the replay file with other processes
    (agent.replay, "Shared replay"); a single controller has none."""
    knobs = KnobsProposer()
    section = config.agent
    code: Proposer
    if section.proposer == "llm":
        code = LLMProposer(section.to_settings(), ledger)
    elif section.proposer == "replay":
        assert section.replay_file is not None
        code = ReplayProposer(section.replay_file, cursor_path=run_dir / "replay.cursor", claim=replay_claim)
    else:
        code = knobs
    proposers = {Operation.MUTATE: code, Operation.HYPOTHESIS: code, Operation.TUNE: knobs}
    if section.proposer == "llm":  # without it, a stack whose merge conflicts is skipped
        proposers[Operation.STACK] = code
    return proposers


def require_trusted_sandbox(config: CampaignConfig, bwrap: BwrapProbe | None = None) -> None:
    """Refuse a campaign that would run LLM-written programs in an unconfined local sandbox.

    Unconfined (no working bubblewrap, ``sandbox.backends.local``), a program can read the harness's files and
    write the data and the folders later runs are scored from; a replayed or knob-only campaign runs
    code a person wrote, and passes. ``bwrap`` is the probe of this machine (None: probe it now).
    Raises :class:`ConfigError` naming the fixes.
    """
    section = config.sandbox
    if section.backend != "local" or config.agent.proposer != "llm" or section.allow_unconfined_local:
        return
    found = bwrap if bwrap is not None else probe_bwrap()
    if found.bwrap is not None:
        return
    problem = (
        'sandbox.backend: "local" cannot confine programs on this machine, and [agent] proposer = '
        f'"llm" runs code an LLM wrote ({found.problem}); fix: install bubblewrap '
        '(apt-get install bubblewrap), or set backend = "docker", or accept the risk with '
        "[sandbox] allow_unconfined_local = true"
    )
    raise ConfigError(
        f"refusing to start campaign {config.campaign.name}:\n  {problem}",
        problems=(problem,),
        hint='apt-get install bubblewrap; or [sandbox] backend = "docker"; '
        "or [sandbox] allow_unconfined_local = true",
    )


def open_workspace(
    config: CampaignConfig, *, lock: bool = True, progress: bool = True, bwrap: BwrapProbe | None = None
) -> Workspace:
    """Open (creating on first use) the campaign's folder, git store and study, to run it.

    Raises :class:`ConfigError` when the campaign may not run here (:func:`require_trusted_sandbox`,
    given ``bwrap`` or probing this machine), :class:`ControllerError` when another controller holds
    the campaign, or a family member (GitStoreError, StudyError) when the store or the study cannot be
    opened.
    """
    require_trusted_sandbox(config, bwrap)
    run_dir = config.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    held = _take_lock(run_dir) if lock else None
    try:
        data = resolve_data(config, progress=progress)
        seed_path = config.campaign.seed_program
        entry = seed_path.name
        store = GitStore(run_dir / "repo")
        store.init({entry: seed_path.read_text(encoding="utf-8")})
        study = CampaignStudy.from_config(config)
        ledger = (
            Ledger.load(run_dir / "ledger.jsonl")
            if (run_dir / "ledger.jsonl").exists()
            else Ledger(run_dir / "ledger.jsonl")
        )
        proposers = build_proposers(config, run_dir, ledger)
    except BaseException:
        if held is not None:
            held.close()
        raise
    return Workspace(config, run_dir, store, study, data, ledger, proposers, entry, held)
