"""The git half of many workers: a shared bare repository that every worker's GitStore syncs with.

Each worker keeps its own :class:`~controller.store.gitstore.GitStore` (its trials record locally, exactly as
on one machine) and mirrors a shared remote (DESIGN.md, "Git store"; issue 7):

* ``fetch`` copies the remote's refs under ``refs/remotes/shared/`` and its notes under
  ``refs/notes/shared/``; ``import`` then gives every candidate this store lacks a local
  ``refs/golf/archive/cand/<n>`` (the loop's ``set_frontier`` moves it to ``cand/<n>`` when it ranks)
  and merges the notes. Notes merge with ``-s ours``: each note is written by the worker that ran
  the trial, so a conflict only arises when a confirm run rewrote a note since the last fetch, and
  then the local text is the newer one.
* ``publish`` makes the remote's ``cand/*``, ``refs/golf/archive/cand/*``, ``best/*`` and notes show
  every recorded candidate and the frontier computed from the shared study, in one
  ``git push --atomic`` where every ref carries ``--force-with-lease`` on the value just fetched. A
  push that raced another worker's is rejected as a whole; it is then re-fetched, recomputed and
  retried with exponential backoff, so no worker overwrites a move it has not seen and no note is
  lost.
* ``claim`` creates a ref only if it does not exist (``--force-with-lease=<ref>:``), which git applies
  atomically on the remote: the one worker whose push succeeds owns the claim (the seed run, a line
  of a shared replay file). Recovering a dead worker's trial needs no claim: the study decides it.
* ``publish_program`` pushes a running trial's program to ``refs/golf/running/<n>`` so that another
  worker can re-run it if this one dies; ``drop_running`` deletes such refs (each with a lease on the
  commit it should still hold) once nobody can need them (controller.workers.peers decides when).

The local store's own write lock is held while local refs change, so recording trials and syncing
never interleave. The GitStore's private ``_run``/``_git``/``_write_lock`` are used on purpose: this
module extends the store's protocol and shares its error reporting.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from controller.errors import GitStoreError
from controller.store.gitstore import ARCHIVE_PREFIX, BEST_PREFIX, CAND_PREFIX, NOTES_REF, SEED_REF, GitStore

MIRROR = "refs/remotes/shared/"  # the remote's refs/* as of the last fetch
NOTES_MIRROR = "refs/notes/shared/golf"  # git notes merge only takes refs under refs/notes/
RUNNING_PREFIX = "refs/golf/running/"
CLAIM_PREFIX = "refs/golf/claims/"
_FETCH_SPECS = (
    "+refs/heads/*:refs/remotes/shared/heads/*",
    "+refs/golf/*:refs/remotes/shared/golf/*",
    "+refs/notes/golf:refs/notes/shared/golf",
)
_MANAGED = (CAND_PREFIX, ARCHIVE_PREFIX, BEST_PREFIX)


class SharedStore(GitStore):
    """A GitStore whose frontier may name candidates that peers recorded: those are pulled first, and
    one not on the remote yet (its worker told the study but has not pushed) is left off until then."""

    remote: SharedRemote | None = None

    def set_frontier(self, ordered_trials: Sequence[int]) -> None:
        recorded = self.recorded_trials()
        if self.remote is not None and any(t not in recorded for t in ordered_trials):
            self.remote.pull()
            recorded = self.recorded_trials()
        known = [t for t in ordered_trials if t in recorded]
        if known or not ordered_trials:
            super().set_frontier(known)

    # A peer tells the study a moment before it pushes, so a parent drawn from the study can be missing
    # here for that moment: reads of a missing commit pull (for up to ~5 s) before they give up.

    def files_at(self, commit: str) -> dict[str, str]:
        self._ensure(commit)
        return super().files_at(commit)

    def checkout_to(self, commit: str, dest: str | Path, overlay: Mapping[str, str] | None = None) -> Path:
        self._ensure(commit)
        return super().checkout_to(commit, dest, overlay)

    def diff(self, a: str, b: str) -> str:
        self._ensure(a)
        self._ensure(b)
        return super().diff(a, b)

    def _ensure(self, commit: str, attempts: int = 20) -> None:
        if self.remote is None:
            return
        for _ in range(attempts):
            if self._resolve(commit) is not None:
                return
            self.remote.pull()
            if self._resolve(commit) is None:
                time.sleep(0.25)


class SharedRemote:
    """Sync ``store`` with the bare repository at ``url`` (a path or any URL git can push to)."""

    def __init__(
        self, store: GitStore, url: str, *, attempts: int = 10, backoff_seconds: float = 0.1
    ) -> None:
        self.store = store
        self.url = url
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.seconds = 0.0  # time spent talking to the remote (the benchmark's git overhead)
        self.retries = 0  # pushes rejected because another worker moved first
        self._lock = threading.RLock()  # one sync at a time per process (fetch updates shared refs)

    # ------------------------------------------------------------------ setup

    def remote_refs_now(self) -> dict[str, str]:
        """The remote's refs, asked directly (``git ls-remote``); raises when it cannot be reached."""
        result = self._timed(lambda: _git_anywhere("ls-remote", self.url))
        if result.returncode != 0:
            raise GitStoreError(
                f"cannot reach the shared git remote {self.url}: {result.stderr.strip()}",
                hint="create it once with `git init --bare <path>` and check that this machine can reach it",
            )
        pairs = (line.split("\t", 1) for line in result.stdout.splitlines() if "\t" in line)
        return {ref: sha for sha, ref in pairs}

    def adopt_seed(self) -> None:
        """Before the store is initialised: when the remote already has a seed commit, start the local
        repository from it, so every worker's candidates descend from the same root commit."""
        remote_seed = self.remote_refs_now().get(SEED_REF)
        if remote_seed is None:
            return
        path = self.store.path
        path.mkdir(parents=True, exist_ok=True)
        if not (path / ".git").is_dir():
            self.store._git("init", "-q", "--initial-branch=seed")
        local_seed = self._resolve(SEED_REF)
        if local_seed == remote_seed:
            return
        if local_seed is not None and self.store.recorded_trials():
            raise GitStoreError(
                f"{path} records candidates on seed {local_seed[:12]}, but the shared remote's seed is "
                f"{remote_seed[:12]}",
                hint="give this worker a fresh run folder (--runs-dir) or use a new shared remote",
            )
        self._timed(
            lambda: self.store._git(
                "fetch", "-q", "--update-head-ok", "--no-tags", self.url, f"+{SEED_REF}:{SEED_REF}"
            )
        )
        self.store._git("reset", "-q", "--hard", "seed")

    def publish_seed(self) -> None:
        """After the store is initialised: offer the local seed commit to the remote. A worker that lost
        the race to another worker's identical seed adopts that one instead."""
        local_seed = self.store.seed_commit
        if self.claim_ref(SEED_REF, local_seed):
            return
        remote_seed = self.remote_refs_now().get(SEED_REF)
        if remote_seed == local_seed:
            return
        if self.store.recorded_trials():
            raise GitStoreError(
                f"{self.store.path} has candidates on a seed the shared remote does not have",
                hint="give this worker a fresh run folder (--runs-dir)",
            )
        self._timed(lambda: self.store._git("fetch", "-q", "--no-tags", self.url, SEED_REF))
        ours = self.store._git("rev-parse", f"{local_seed}^{{tree}}")
        theirs = self.store._git("rev-parse", "FETCH_HEAD^{tree}")
        if ours != theirs:
            raise GitStoreError(
                f"the shared remote {self.url} holds a different seed program than this campaign's",
                hint="every worker must run the same campaign file; or use a new shared remote",
            )
        with self.store._write_lock():
            self.store._git("update-ref", "-m", "adopt the shared seed", SEED_REF, "FETCH_HEAD")

    # ------------------------------------------------------------------ pull

    def pull(self) -> None:
        """Fetch the remote and take in every candidate and note this store lacks."""
        with self._lock:
            self._fetch()
            self._import()

    def _fetch(self) -> None:
        result = self._timed(
            lambda: self.store._run("fetch", "-q", "--no-tags", "--prune", self.url, *_FETCH_SPECS)
        )
        if result.returncode != 0 and "couldn't find remote ref refs/notes/golf" in result.stderr:
            # A remote without notes yet: fetch the rest (and drop a stale mirror of its notes).
            result = self._timed(
                lambda: self.store._run("fetch", "-q", "--no-tags", "--prune", self.url, *_FETCH_SPECS[:2])
            )
        if result.returncode != 0:
            raise self.store._error(("fetch", self.url), result)

    def _import(self) -> None:
        mirrored = self._mirror()
        with self.store._write_lock():
            local = self.store.recorded_trials()
            for ref, commit in mirrored.items():
                for prefix in (CAND_PREFIX, ARCHIVE_PREFIX):
                    name = ref.removeprefix(prefix)
                    if ref.startswith(prefix) and name.isdigit() and int(name) not in local:
                        self.store._git("update-ref", f"{ARCHIVE_PREFIX}{name}", commit, "0" * 40)
                        local[int(name)] = commit
            remote_notes = self._resolve(NOTES_MIRROR)
            if remote_notes is None:
                return
            local_notes = self._resolve(NOTES_REF)
            if local_notes is None:
                self.store._git("update-ref", NOTES_REF, remote_notes, "0" * 40)
            elif local_notes != remote_notes:
                self.store._git("notes", f"--ref={NOTES_REF}", "merge", "-q", "-s", "ours", NOTES_MIRROR)

    def _mirror(self) -> dict[str, str]:
        """The remote's refs as last fetched, under their names on the remote."""
        mirrored: dict[str, str] = {}
        for ref, commit in self.store._refs(MIRROR).items():
            name = ref.removeprefix(MIRROR)
            mirrored[f"refs/{name}"] = commit  # heads/cand/5 -> refs/heads/cand/5, golf/... -> refs/golf/...
        notes = self._resolve(NOTES_MIRROR)
        if notes is not None:
            mirrored[NOTES_REF] = notes
        return mirrored

    def has_commit(self, commit: str) -> bool:
        return self._resolve(commit) is not None

    # ------------------------------------------------------------------ push

    def publish(self, frontier: Callable[[], Sequence[int]]) -> int:
        """Make the remote show every recorded candidate, the notes, and ``best/*`` = ``frontier()``
        (trial numbers, best first, recomputed on every attempt; trials whose commits this store does
        not have yet are left for their own worker to place). Returns the number of rejected pushes
        before one went through. Raises :class:`GitStoreError` after ``attempts`` rejections."""
        with self._lock:
            for attempt in range(self.attempts):
                self._fetch()
                self._import()
                updates = self._updates(frontier())
                if not updates:
                    return attempt
                if self._push(updates):
                    return attempt
                self.retries += 1
                # Jittered exponential backoff, so racing workers do not collide again in lock-step.
                time.sleep(self.backoff_seconds * (2 ** min(attempt, 5)) * random.uniform(0.5, 1.5))
        raise GitStoreError(
            f"could not publish to {self.url}: {self.attempts} pushes in a row were rejected",
            hint="another worker keeps moving the same refs; check that all workers share one study",
        )

    def _updates(self, frontier: Sequence[int]) -> list[tuple[str, str | None, str | None]]:
        """(ref, new commit or None to delete, expected remote commit or None when absent)."""
        remote = self._mirror()
        local = self.store.recorded_trials()
        ranked = [t for t in frontier if t in local]
        desired: dict[str, str] = {}
        for trial, commit in local.items():
            desired[f"{CAND_PREFIX if trial in ranked else ARCHIVE_PREFIX}{trial}"] = commit
        for rank, trial in enumerate(ranked, start=1):
            desired[f"{BEST_PREFIX}{rank}"] = local[trial]
        notes = self._resolve(NOTES_REF)
        if notes is not None:
            desired[NOTES_REF] = notes
        if not ranked:  # nothing scored yet here: leave the remote's best/* to those who know more
            desired.update({r: c for r, c in remote.items() if r.startswith(BEST_PREFIX)})
        updates = [
            (ref, commit, remote.get(ref)) for ref, commit in desired.items() if remote.get(ref) != commit
        ]
        updates += [
            (ref, None, commit)
            for ref, commit in remote.items()
            if ref.startswith(_MANAGED) and ref not in desired
        ]
        return updates

    def _push(self, updates: list[tuple[str, str | None, str | None]]) -> bool:
        """One atomic push with a lease per ref; False when the remote moved under us."""
        args = ["push", "--porcelain", "--atomic", "--no-verify"]
        specs = []
        for ref, new, expected in updates:
            args.append(f"--force-with-lease={ref}:{expected or ''}")
            specs.append(f"{new}:{ref}" if new else f":{ref}")
        result = self._timed(lambda: self.store._run(*args, self.url, *specs))
        if result.returncode == 0:
            return True
        if _rejected(result.stdout):
            return False
        raise self.store._error(("push", self.url), result)

    def claim_ref(self, ref: str, commit: str) -> bool:
        """Create ``ref`` on the remote pointing at ``commit`` if and only if it does not exist yet;
        True when this call created it (or it already points at ``commit``)."""
        result = self._timed(
            lambda: self.store._run(
                "push", "--porcelain", f"--force-with-lease={ref}:", self.url, f"{commit}:{ref}"
            )
        )
        if result.returncode == 0:
            return True
        if _rejected(result.stdout):
            return False
        raise self.store._error(("push", self.url, ref), result)

    def claim(self, name: str) -> bool:
        """Own ``refs/golf/claims/<name>`` (see module docstring). Each call pushes a commit of its own
        (a pushed commit equal to the remote's would count as success for every claimant)."""
        if self._resolve(f"{MIRROR}golf/claims/{name}") is not None:
            return False  # claims are never deleted, so one seen at the last fetch is still someone's
        seed = self.store.seed_commit
        message = f"claim {name} by {uuid.uuid4().hex} (pid {os.getpid()})"
        commit = self.store._git("commit-tree", f"{seed}^{{tree}}", "-p", seed, "-m", message)
        return self.claim_ref(f"{CLAIM_PREFIX}{name}", commit)

    # ------------------------------------------------------------------ running programs

    def publish_program(self, trial: int, files: dict[str, str]) -> str:
        """Push a running trial's program (path -> text) to ``refs/golf/running/<trial>``; return the
        commit the ref points at (for :meth:`drop_running`)."""
        entries = []
        for rel, text in sorted(files.items()):
            blob = self.store._git("hash-object", "-w", "--stdin", stdin=text)
            entries.append(f"100644 blob {blob}\t{rel}")
        tree = self.store._git("mktree", stdin="\n".join(entries) + "\n")
        commit = self.store._git("commit-tree", tree, "-m", f"running trial {trial}")
        self.claim_ref(f"{RUNNING_PREFIX}{trial}", commit)
        return commit

    def running_programs(self) -> dict[int, str]:
        """``refs/golf/running/<n>`` on the remote as of the last fetch: trial number -> commit."""
        mirror = f"{MIRROR}golf/running/"
        refs = self.store._refs(mirror)
        return {int(n): c for ref, c in refs.items() if (n := ref.removeprefix(mirror)).isdigit()}

    def drop_running(self, programs: Mapping[int, str]) -> list[int]:
        """Delete ``refs/golf/running/<n>`` on the remote for each ``n -> commit`` of ``programs`` whose
        ref still points at that commit, in one push; return the trials whose ref this call deleted.
        A ref already gone or moved is left as it is (its lease fails; no error)."""
        if not programs:
            return []
        refs = {f"{RUNNING_PREFIX}{n}": n for n in programs}
        args = ["push", "--porcelain", "--no-verify"]
        args += [f"--force-with-lease={RUNNING_PREFIX}{n}:{c}" for n, c in sorted(programs.items())]
        with self._lock:
            result = self._timed(
                lambda: self.store._run(*args, self.url, *(f":{ref}" for ref in sorted(refs)))
            )
            if result.returncode != 0 and not _rejected(result.stdout):
                raise self.store._error(("push", self.url, "(delete running programs)"), result)
            # Porcelain lines: "-<TAB>:<ref><TAB>[deleted]" for each ref this push removed.
            deleted = [
                ref
                for line in result.stdout.splitlines()
                if line.startswith("-\t") and (ref := line.split("\t")[1].removeprefix(":")) in refs
            ]
            if deleted:  # the mirror follows, as the next fetch's --prune would
                mirrored = (f"delete {MIRROR}{ref.removeprefix('refs/')}\n" for ref in deleted)
                self.store._git("update-ref", "--stdin", stdin="".join(mirrored))
        return sorted(refs[ref] for ref in deleted)

    def fetch_program(self, trial: int, entry: str) -> str | None:
        """The program a (possibly dead) worker published for ``trial``, from the last fetch."""
        result = self.store._run("show", f"{MIRROR}golf/running/{trial}:{entry}")
        return result.stdout if result.returncode == 0 else None

    # ------------------------------------------------------------------ internals

    def _resolve(self, rev: str) -> str | None:
        if not (self.store.path / ".git").is_dir():
            return None
        return self.store._resolve(rev)

    def _timed(self, call):
        started = time.perf_counter()
        try:
            return call()
        finally:
            self.seconds += time.perf_counter() - started


def _rejected(porcelain: str) -> bool:
    """Whether ``git push --porcelain`` says a ref was refused (lease lost, atomic transaction failed)."""
    return any(line.startswith("!") for line in porcelain.splitlines())


def _git_anywhere(*args: str) -> subprocess.CompletedProcess:
    """git outside any repository (``ls-remote`` before the local store exists)."""
    env = {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=120, check=False, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise GitStoreError(
            f"git {' '.join(args)} took over 120 s", hint="check the network to the remote"
        ) from exc
