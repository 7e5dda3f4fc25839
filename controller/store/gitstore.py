"""The campaign's git repository (DESIGN.md, "Git store"): every scored candidate as a commit.

Layout of ``runs/<campaign>/repo`` (an ordinary repository; its work tree shows the seed and is never
touched after ``init``):

* ``refs/heads/seed``: the root commit, the seed program.
* a commit per scored candidate, on its parent; title = hypothesis, body = rationale, trailers
  ``Golf-Trial``, ``Golf-Parent``, ``Golf-Status``, ``Golf-BPB``, ``Golf-Bytes``, ``Golf-Train-Seconds``,
  ``Golf-Seeds``, ``Golf-Steps`` (the caller supplies all but ``Golf-Trial``); the full RunResult as a
  note under ``refs/notes/golf``.
* ``refs/heads/best/1..K``: the current frontier, best first. Their reflog is the frontier's history.
* ``refs/heads/cand/<trial>``: candidates on the frontier (and new ones until the next
  :meth:`GitStore.set_frontier`).
* ``refs/golf/archive/cand/<trial>``: every other candidate.

Reading of DESIGN's "branches that leave the frontier are moved under refs/golf/archive/, never
deleted": the ``cand/<trial>`` *branch* of a candidate that is not on the frontier is renamed to
``refs/golf/archive/cand/<trial>``, so ``git branch`` in the morning lists the frontier and not a
night's thousand attempts, while every commit stays reachable (safe from gc) and can be checked out,
diffed and re-run by its archive ref. A candidate that re-enters the frontier moves back.

Every write holds an exclusive ``fcntl`` lock on ``.git/autogolf.lock`` (one writer at a time, across
processes and threads).

Two ways to talk to git, each where it reads better (README, "Dependencies"):

* GitPython creates and configures the repository and reads commits, their trailers, trees and files.
  The repository is opened per call and closed after it: closing ends, and waits for, the
  ``cat-file`` processes GitPython reads objects through (its GitDB backend, which needs none, is
  deprecated), and a fresh open sees what other processes wrote.
* The git command line writes objects and handles refs and notes. A candidate's tree is built in a
  throwaway index (GitPython's index would run the same ``read-tree`` behind a wrapper);
  ``update-ref --stdin`` applies a frontier change as one atomic transaction that checks the old
  values, and ``for-each-ref`` lists refs as one snapshot while other workers move them (GitPython
  reads and writes ref files one at a time); GitPython has no notes API.

Every git process is short-lived and waited for, and auto-gc is kept in the foreground, so a night of
trials leaves no git processes behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import git

from controller.errors import GitStoreError

NOTES_REF = "refs/notes/golf"
SEED_REF = "refs/heads/seed"
CAND_PREFIX = "refs/heads/cand/"
ARCHIVE_PREFIX = "refs/golf/archive/cand/"
BEST_PREFIX = "refs/heads/best/"
_TRAILER_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_GIT_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class CommitInfo:
    commit: str
    parents: tuple[str, ...]
    title: str
    body: str  # the rationale, without the trailer block
    trailers: dict[str, str] = field(default_factory=dict)
    note: str | None = None

    @property
    def trial(self) -> int | None:
        value = self.trailers.get("Golf-Trial")
        return int(value) if value and value.isdigit() else None


class GitStore:
    """One campaign's repository at ``path`` (created by :meth:`init`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._thread_lock = threading.RLock()
        self._repo: git.Repo | None = None  # for reads, see _open
        self._repo_lock = threading.Lock()
        self._lock_depth = 0
        self._lock_file: io.TextIOWrapper | None = None

    # ------------------------------------------------------------------ setup

    def init(self, seed_program_files: Mapping[str, str], title: str = "seed program") -> str:
        """Create the repository with the seed program as its root commit; return that commit.

        Idempotent: a second call with the same files returns the same commit. Raises
        :class:`GitStoreError` if the repository already holds a different seed.
        """
        if not seed_program_files:
            raise GitStoreError("init needs at least one seed file", hint="pass {'train_gpt.py': text}")
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / ".git").is_dir():
            git.Repo.init(self.path, initial_branch="seed").close()
        with self._open() as repo, repo.config_writer() as config:
            config.set_value("user", "name", "autogolf")
            config.set_value("user", "email", "autogolf@localhost")
            config.set_value("core", "logAllRefUpdates", "true")
            config.set_value("gc", "autoDetach", "false")  # a detached auto-gc would outlive the call
            config.set_value("maintenance", "auto", "false")
        with self._write_lock():
            tree = self._tree_with(None, seed_program_files)
            existing = self._resolve(SEED_REF)
            if existing is not None:
                with self._open() as repo:
                    existing_tree = self._commit(repo, existing).tree.hexsha
                if existing_tree != tree:
                    raise GitStoreError(
                        f"{self.path} already holds a different seed program (seed is {existing[:12]})",
                        hint="use a new campaign name for a new seed program",
                    )
                return existing
            commit = self._git("commit-tree", tree, "-F", "-", stdin=f"{title}\n")
            self._git("update-ref", "-m", "seed", SEED_REF, commit, "0" * 40)
            self._git("reset", "-q", "--hard", "seed")  # show the seed in the work tree
            return commit

    @property
    def seed_commit(self) -> str:
        commit = self._resolve(SEED_REF)
        if commit is None:
            raise GitStoreError(f"{self.path} has no seed commit", hint="call GitStore.init first")
        return commit

    # ------------------------------------------------------------------ writes

    def record(
        self,
        trial: int,
        parent_commit: str,
        files: Mapping[str, str] | None,
        message_title: str,
        message_body: str,
        trailers: Mapping[str, str],
        note: str,
        second_parent_commit: str | None = None,
    ) -> str:
        """Commit a scored candidate on ``parent_commit`` as branch ``cand/<trial>``; return the commit.
        A stack names the win whose change it replayed as ``second_parent_commit``: a merge commit.

        ``files`` maps changed paths to their full text (``None`` or empty: the parent's tree, e.g. a
        knob-only or confirm trial). ``Golf-Trial`` is added to ``trailers``. Idempotent by trial
        number: if the trial is already recorded with the same trailers and parent, that commit is
        returned (its note written if a crash lost it). A different record for the same trial raises
        :class:`GitStoreError`, so a result is never silently replaced.
        """
        full_trailers = {"Golf-Trial": str(trial), **{k: _one_line(v) for k, v in trailers.items()}}
        for key in full_trailers:
            if not _TRAILER_KEY.match(key):
                raise GitStoreError(
                    f"trailer key {key!r} is not a git trailer token", hint="use e.g. Golf-BPB"
                )
        with self._write_lock():
            parent = self._resolve(parent_commit)
            if parent is None:
                raise GitStoreError(
                    f"parent {parent_commit!r} of trial {trial} is not a commit in {self.path}"
                )
            parents = (parent,)
            if second_parent_commit is not None:
                second = self._resolve(second_parent_commit)
                if second is None:
                    raise GitStoreError(f"second parent {second_parent_commit!r} of trial {trial} is missing")
                parents = (parent, second)
            existing = self.commit_of(trial)
            if existing is not None:
                info = self.show(existing)
                if info.trailers != full_trailers or info.parents != parents:
                    raise GitStoreError(
                        f"trial {trial} is already recorded as {existing[:12]} with a different result "
                        f"(trailers {info.trailers}, parents {info.parents})",
                        hint="trial numbers come from the study; record each trial once",
                    )
                if info.note is None:
                    self._write_note(existing, note)
                return existing
            tree = self._tree_with(parent, files or {})
            title = _one_line(message_title) or f"trial {trial}"
            trailer_block = "\n".join(f"{k}: {v}" for k, v in full_trailers.items())
            body = message_body.strip()
            message = f"{title}\n\n{body}\n\n{trailer_block}\n" if body else f"{title}\n\n{trailer_block}\n"
            parent_args = [arg for p in parents for arg in ("-p", p)]
            commit = self._git("commit-tree", tree, *parent_args, "-F", "-", stdin=message)
            # Note before ref: once the branch exists, its note exists too.
            self._write_note(commit, note)
            self._git("update-ref", "-m", f"record trial {trial}", f"{CAND_PREFIX}{trial}", commit, "0" * 40)
            return commit

    def set_frontier(self, ordered_trials: Sequence[int]) -> None:
        """Point ``best/1..len`` at these trials (best first) and archive every other ``cand/*``.

        Applied as one atomic ref transaction. Raises :class:`GitStoreError` naming any trial that was
        never recorded.
        """
        if len(set(ordered_trials)) != len(ordered_trials):
            raise GitStoreError(f"frontier {list(ordered_trials)} repeats a trial")
        with self._write_lock():
            refs = self._refs("refs/heads/cand/", "refs/heads/best/", "refs/golf/archive/cand/")
            recorded = self._recorded(refs)
            missing = [t for t in ordered_trials if t not in recorded]
            if missing:
                raise GitStoreError(f"cannot put unrecorded trials {missing} on the frontier")
            commands: list[str] = []
            for rank, trial in enumerate(ordered_trials, start=1):
                commands.append(f"update {BEST_PREFIX}{rank} {recorded[trial]}")
            for ref, commit in refs.items():
                if ref.startswith(BEST_PREFIX) and int(ref.removeprefix(BEST_PREFIX)) > len(ordered_trials):
                    commands.append(f"delete {ref} {commit}")
            keep = set(ordered_trials)
            for ref, commit in refs.items():
                if ref.startswith(CAND_PREFIX) and int(ref.removeprefix(CAND_PREFIX)) not in keep:
                    trial = ref.removeprefix(CAND_PREFIX)
                    commands += [f"create {ARCHIVE_PREFIX}{trial} {commit}", f"delete {ref} {commit}"]
                if ref.startswith(ARCHIVE_PREFIX) and int(ref.removeprefix(ARCHIVE_PREFIX)) in keep:
                    trial = ref.removeprefix(ARCHIVE_PREFIX)
                    commands += [f"create {CAND_PREFIX}{trial} {commit}", f"delete {ref} {commit}"]
            summary = ", ".join(f"{rank}=trial {t}" for rank, t in enumerate(ordered_trials, start=1))
            self._git("update-ref", "-m", f"frontier: {summary}", "--stdin", stdin="\n".join(commands) + "\n")

    def write_note(self, commit: str, note: str) -> None:
        """Replace a candidate's note (e.g. after the confirm stage adds seeds)."""
        with self._write_lock():
            self._write_note(commit, note)

    # ------------------------------------------------------------------ reads

    def commit_of(self, trial: int) -> str | None:
        """The commit recorded for ``trial`` (on the frontier or archived), or ``None``."""
        return self._recorded(self._refs(f"{CAND_PREFIX}{trial}", f"{ARCHIVE_PREFIX}{trial}")).get(trial)

    def recorded_trials(self) -> dict[int, str]:
        """Every recorded trial number and its commit."""
        return self._recorded(self._refs("refs/heads/cand/", "refs/golf/archive/cand/"))

    def frontier(self) -> list[str]:
        """The commits of ``best/1..K``, best first."""
        refs = self._refs("refs/heads/best/")
        return [refs[r] for r in sorted(refs, key=lambda r: int(r.removeprefix(BEST_PREFIX)))]

    def read_trailers(self, commit: str) -> dict[str, str]:
        """The commit message's trailers (``Golf-Trial``, ``Golf-BPB``, ...); the last wins for a key
        given twice."""
        with self._open() as repo:
            return dict(self._commit(repo, commit).trailers_list)

    def read_note(self, commit: str) -> str | None:
        """The note of ``commit`` (the full RunResult as the caller wrote it), or ``None``."""
        result = self._run("notes", f"--ref={NOTES_REF}", "show", commit)
        if result.returncode != 0:
            if "no note found" in result.stderr:
                return None
            raise self._error(("notes", "show", commit), result)
        return result.stdout

    def show(self, commit: str) -> CommitInfo:
        """One recorded commit: title, body without the trailer block, trailers and note."""
        with self._open() as repo:
            found = self._commit(repo, commit)
            sha, parents = found.hexsha, tuple(p.hexsha for p in found.parents)
            message = (
                found.message if isinstance(found.message, str) else found.message.decode(errors="replace")
            )
            trailers = dict(found.trailers_list)
        title, _, rest = message.strip("\n").partition("\n")
        paragraphs = rest.strip("\n").split("\n\n")
        if trailers and paragraphs and all(":" in line for line in paragraphs[-1].splitlines()):
            paragraphs = paragraphs[:-1]
        return CommitInfo(
            commit=sha,
            parents=parents,
            title=title,
            body="\n\n".join(paragraphs).strip("\n"),
            trailers=trailers,
            note=self.read_note(sha),
        )

    def diff(self, a: str, b: str) -> str:
        """Unified diff from commit ``a`` to commit ``b``."""
        return self._git("diff", "--no-color", a, b, "--", strip=False)

    def files_at(self, commit: str) -> dict[str, str]:
        """Every file of the program at ``commit``: path -> text. Raises :class:`GitStoreError` for a
        commit that does not exist and for a file that is not UTF-8 text."""
        files: dict[str, str] = {}
        with self._open() as repo:
            for blob in self._commit(repo, commit).tree.traverse():
                if blob.type != "blob" or blob.mode == git.Blob.link_mode:
                    continue
                try:
                    files[blob.path] = blob.data_stream.read().decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise GitStoreError(
                        f"{blob.path} at {commit} is not UTF-8 text", hint="use checkout_to for binaries"
                    ) from exc
        return files

    def checkout_to(self, commit: str, dest: str | Path, overlay: Mapping[str, str] | None = None) -> Path:
        """Export the program at ``commit`` into ``dest`` (new or empty), no work tree involved.

        ``overlay`` files (path -> text) are written over it: the candidate of a proposal before it is
        scored and recorded. Raises :class:`GitStoreError` when ``dest`` holds anything, and for a tree
        holding a symbolic link (a program is plain files; the store never records links).
        """
        dest = Path(dest)
        if dest.exists() and any(dest.iterdir()):
            raise GitStoreError(f"{dest} is not empty", hint="export into a fresh folder")
        dest.mkdir(parents=True, exist_ok=True)
        with self._open() as repo:
            for blob in self._commit(repo, commit).tree.traverse():
                if blob.type != "blob":
                    continue  # a submodule is not part of the program
                if blob.mode == git.Blob.link_mode:
                    raise GitStoreError(
                        f"{blob.path} at {commit} is a symbolic link",
                        hint="record the program as plain files",
                    )
                target = dest / _safe_path(blob.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob.data_stream.read())
                if blob.mode & 0o111:
                    target.chmod(0o755)
        for rel, text in (overlay or {}).items():
            target = dest / _safe_path(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return dest

    # ------------------------------------------------------------------ internals

    @contextlib.contextmanager
    def _open(self) -> Iterator[git.Repo]:
        """The repository for reading, one per store and one caller at a time (GitPython's ``Repo``
        is not thread-safe). It keeps the ``cat-file`` processes it reads objects through between
        calls: starting them was most of a small read's cost. It still sees what other processes
        wrote since: GitPython reads refs from their files on every call, and ``cat-file`` re-reads
        the object store when an object is not where it looked."""
        with self._repo_lock:
            if self._repo is None:
                try:
                    self._repo = git.Repo(self.path)
                except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
                    raise GitStoreError(
                        f"{self.path} is not a git repository",
                        hint="create it with GitStore.init (autogolf run does)",
                    ) from exc
            yield self._repo

    def close(self) -> None:
        """End the reading processes (a later read starts them again)."""
        with self._repo_lock:
            if self._repo is not None:
                self._repo.close()
                self._repo = None

    def _commit(self, repo: git.Repo, rev: str) -> git.Commit:
        """The commit ``rev`` names, read now (GitPython takes a full sha on trust until its object is
        read); :class:`GitStoreError` when there is none."""
        try:
            found = repo.commit(rev)
            found.tree  # noqa: B018 (the read that fails for a missing object)
            return found
        except (git.BadName, git.BadObject, ValueError) as exc:
            raise GitStoreError(
                f"{rev!r} is not a commit in {self.path}",
                hint="check the trial number; `autogolf leaderboard --all` lists the recorded ones",
            ) from exc

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        with self._thread_lock:
            if self._lock_depth == 0:
                lock_path = self.path / ".git" / "autogolf.lock"
                self._lock_file = open(lock_path, "a")  # noqa: SIM115 (closed in finally below)
                fcntl.flock(self._lock_file, fcntl.LOCK_EX)
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_file is not None:
                    fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                    self._lock_file.close()
                    self._lock_file = None

    def _tree_with(self, parent: str | None, files: Mapping[str, str]) -> str:
        """The tree of ``parent`` with ``files`` written over it, built in a throwaway index."""
        if parent is not None and not files:
            return self._git("rev-parse", f"{parent}^{{tree}}")
        entries = []
        for rel, text in files.items():
            blob = self._git("hash-object", "-w", "--stdin", stdin=text)
            entries.append(f"100644 {blob}\t{_safe_path(rel)}")
        with tempfile.TemporaryDirectory(prefix="autogolf-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent is not None:
                self._git("read-tree", parent, env=env)
            self._git("update-index", "--add", "--index-info", stdin="\n".join(entries) + "\n", env=env)
            return self._git("write-tree", env=env)

    def _write_note(self, commit: str, note: str) -> None:
        # -C reuses the blob verbatim; -m/-F would reformat the text (git stripspace).
        blob = self._git("hash-object", "-w", "--stdin", stdin=note)
        self._git("notes", f"--ref={NOTES_REF}", "add", "-f", "-C", blob, commit)

    def _resolve(self, rev: str) -> str | None:
        result = self._run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        return result.stdout.strip() if result.returncode == 0 else None

    def _refs(self, *patterns: str) -> dict[str, str]:
        text = self._git("for-each-ref", "--format=%(refname) %(objectname)", *patterns)
        return dict(line.split(" ", 1) for line in text.splitlines() if line)

    @staticmethod
    def _recorded(refs: Mapping[str, str]) -> dict[int, str]:
        recorded: dict[int, str] = {}
        for ref, commit in refs.items():
            for prefix in (CAND_PREFIX, ARCHIVE_PREFIX):
                name = ref.removeprefix(prefix)
                if ref.startswith(prefix) and name.isdigit():
                    recorded[int(name)] = commit
        return recorded

    def _git(
        self, *args: str, stdin: str | None = None, env: Mapping[str, str] | None = None, strip: bool = True
    ) -> str:
        result = self._run(*args, stdin=stdin, env=env)
        if result.returncode != 0:
            raise self._error(args, result)
        return result.stdout.strip() if strip else result.stdout

    def _run(
        self,
        *args: str,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        text: bool = True,
    ) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", **(env or {})}
        try:
            return subprocess.run(
                ["git", "-C", str(self.path), *args],
                input=stdin if text else None,
                capture_output=True,
                text=text,
                env=full_env,
                timeout=_GIT_TIMEOUT_SECONDS,
                check=False,
            )
        except FileNotFoundError as exc:
            raise GitStoreError("git is not installed", hint="install git (2.30 or newer)") from exc
        except subprocess.TimeoutExpired as exc:  # run() has killed and reaped it
            raise GitStoreError(f"git {' '.join(args)} took over {_GIT_TIMEOUT_SECONDS} s") from exc

    def _error(self, args: Sequence[str], result: subprocess.CompletedProcess) -> GitStoreError:
        stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.decode(errors="replace")
        return GitStoreError(
            f"git {' '.join(args)} failed in {self.path} (exit {result.returncode}): {stderr.strip()}",
            hint="check that the campaign repository is intact (git -C <repo> fsck)",
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _safe_path(rel: str) -> str:
    """A program path must stay inside the program folder."""
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] == ".git":
        raise GitStoreError(f"file path {rel!r} leaves the program folder", hint="use a relative path")
    return path.as_posix()
