"""The campaign git store, against real git in tmp_path."""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from controller.errors import GitStoreError
from controller.store.gitstore import GitStore

SEED = {"train_gpt.py": "KNOBS = []\nprint('seed')\n"}


def trailers(status: str = "ok", bpb: str = "1.2244") -> dict[str, str]:
    return {"Golf-Parent": "0", "Golf-Status": status, "Golf-BPB": bpb, "Golf-Bytes": "15863489"}


@pytest.fixture
def store(tmp_path) -> GitStore:
    store = GitStore(tmp_path / "repo")
    store.init(SEED)
    return store


def git(store: GitStore, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(store.path), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def record(store: GitStore, trial: int, parent: str | None = None, text: str | None = None, **kw) -> str:
    files = {"train_gpt.py": text} if text is not None else None
    return store.record(
        trial,
        parent or store.seed_commit,
        files,
        kw.pop("title", f"idea {trial}"),
        kw.pop("body", f"because {trial}"),
        kw.pop("trailers", trailers()),
        kw.pop("note", f'{{"trial": {trial}}}'),
    )


def test_init_is_idempotent_and_shows_the_seed(tmp_path, store):
    again = GitStore(store.path).init(SEED)
    assert again == store.seed_commit
    assert (store.path / "train_gpt.py").read_text() == SEED["train_gpt.py"]
    assert git(store, "config", "user.name") == "autogolf"
    assert git(store, "config", "gc.autoDetach") == "false"  # no gc left running in the background
    with pytest.raises(GitStoreError, match="different seed program"):
        GitStore(store.path).init({"train_gpt.py": "other\n"})


def test_record_makes_a_commit_on_the_parent_with_trailers_note_and_branch(store):
    commit = record(
        store, 1, text="KNOBS = []\nprint('one')\n", title="Try   wider\nMLP", body="Rationale.\n"
    )
    info = store.show(commit)
    assert info.parents == (store.seed_commit,)
    assert info.title == "Try wider MLP" and info.body == "Rationale."
    assert info.trailers == {"Golf-Trial": "1", **trailers()}
    assert info.trial == 1
    assert info.note == '{"trial": 1}'
    assert git(store, "rev-parse", "cand/1") == commit
    assert git(store, "notes", "--ref=refs/notes/golf", "show", commit) == '{"trial": 1}'
    assert store.files_at(commit) == {"train_gpt.py": "KNOBS = []\nprint('one')\n"}


def test_a_rationale_of_several_paragraphs_is_kept_apart_from_the_trailers(store):
    commit = record(store, 1, body="First: the idea.\n\nSecond paragraph.")
    info = store.show(commit)
    assert info.body == "First: the idea.\n\nSecond paragraph."
    assert store.read_trailers(commit) == info.trailers == {"Golf-Trial": "1", **trailers()}


def test_reading_a_commit_that_is_not_there_names_it(store, tmp_path):
    for read in (store.files_at, store.show, store.read_trailers):
        with pytest.raises(GitStoreError, match=r"'0{40}' is not a commit in .*repo"):
            read("0" * 40)
    with pytest.raises(GitStoreError, match=r"'cand/9' is not a commit"):
        store.checkout_to("cand/9", tmp_path / "out")
    with pytest.raises(GitStoreError, match=r"nothere is not a git repository"):
        GitStore(tmp_path / "nothere").files_at("seed")


def test_knob_only_candidate_keeps_the_parent_tree(store):
    commit = record(store, 1)
    assert git(store, "rev-parse", f"{commit}^{{tree}}") == git(store, "rev-parse", "seed^{tree}")
    assert store.diff(store.seed_commit, commit) == ""


def test_record_is_idempotent_by_trial_number(store):
    first = record(store, 3, text="a\n")
    assert record(store, 3, text="a\n") == first
    with pytest.raises(GitStoreError, match="trial 3 is already recorded"):
        record(store, 3, text="a\n", trailers=trailers(bpb="1.1"))


def test_record_restores_a_note_lost_in_a_crash(store):
    commit = record(store, 4)
    git(store, "notes", "--ref=refs/notes/golf", "remove", commit)
    assert store.read_note(commit) is None
    assert record(store, 4) == commit
    assert store.read_note(commit) == '{"trial": 4}'


def test_frontier_moves_best_and_archives_the_rest(store):
    commits = {t: record(store, t, text=f"v{t}\n") for t in (1, 2, 3)}
    store.set_frontier([2, 1])
    assert store.frontier() == [commits[2], commits[1]]
    branches = set(git(store, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split())
    assert branches == {"seed", "best/1", "best/2", "cand/1", "cand/2"}
    assert git(store, "rev-parse", "refs/golf/archive/cand/3") == commits[3]
    assert store.commit_of(3) == commits[3]
    # trial 3 comes back to the frontier; trial 1 leaves it; best/2 goes away.
    store.set_frontier([3])
    assert store.frontier() == [commits[3]]
    assert git(store, "rev-parse", "cand/3") == commits[3]
    assert git(store, "rev-parse", "refs/golf/archive/cand/1") == commits[1]
    assert store.recorded_trials() == commits
    # The reflog of best/1 keeps the frontier's history.
    assert "frontier: 1=trial 3" in git(store, "reflog", "show", "--format=%gs", "best/1")


def test_frontier_rejects_unrecorded_trials(store):
    record(store, 1)
    with pytest.raises(GitStoreError, match=r"unrecorded trials \[9\]"):
        store.set_frontier([1, 9])


def test_checkout_to_exports_the_program_with_an_overlay(store, tmp_path):
    commit = record(store, 1, text="one\n")
    out = store.checkout_to(commit, tmp_path / "prog", overlay={"extra/helper.py": "x = 1\n"})
    assert (out / "train_gpt.py").read_text() == "one\n"
    assert (out / "extra" / "helper.py").read_text() == "x = 1\n"
    assert not (out / ".git").exists()
    with pytest.raises(GitStoreError, match="not empty"):
        store.checkout_to(commit, out)


def test_diff_shows_the_change(store):
    a = record(store, 1, text="alpha\n")
    b = record(store, 2, parent=a, text="beta\n")
    diff = store.diff(a, b)
    assert "-alpha" in diff and "+beta" in diff


def test_git_errors_carry_the_command_and_stderr(store):
    with pytest.raises(GitStoreError, match="is not a commit"):
        record(store, 1, parent="0" * 40)
    with pytest.raises(GitStoreError, match="git diff --no-color nope") as info:
        store.diff("nope", "seed")
    assert "unknown revision" in str(info.value) or "bad revision" in str(info.value)


def test_paths_outside_the_program_are_refused(store):
    with pytest.raises(GitStoreError, match="leaves the program folder"):
        store.record(1, store.seed_commit, {"../evil.py": "x"}, "t", "", trailers(), "n")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to list child processes")
def test_git_processes_stay_bounded_over_many_operations_and_end_with_the_store(store):
    parent = store.seed_commit
    for trial in range(1, 21):
        parent = record(store, trial, parent=parent, text=f"v{trial}\n")
        store.read_trailers(parent)
        store.files_at(parent)
        # The reading processes (cat-file --batch and --batch-check) are kept, never more than those.
        assert len(_working_in(store.path)) <= 2
    store.set_frontier([20, 19, 18])
    assert store.files_at(store.commit_of(20)) == {"train_gpt.py": "v20\n"}
    assert _working_in(store.path)
    store.close()
    assert _working_in(store.path) == []


def _working_in(folder: Path) -> list[int]:
    """This process's children whose working directory is ``folder`` (git runs in the repository)."""
    found = []
    for pid in _children(os.getpid()):
        try:
            if Path(f"/proc/{pid}/cwd").resolve() == folder.resolve():
                found.append(pid)
        except OSError:
            continue
    return found


def test_writers_wait_for_the_lock(store):
    lock = open(store.path / ".git" / "autogolf.lock", "a")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)  # as another process would
    done = threading.Event()
    worker = threading.Thread(target=lambda: (record(store, 1), done.set()))
    worker.start()
    try:
        assert not done.wait(0.5)  # blocked behind the other writer
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    worker.join(timeout=30)
    assert done.is_set() and store.commit_of(1) is not None


def test_concurrent_writers_record_everything(store):
    errors: list[BaseException] = []

    def write(offset: int) -> None:
        try:
            for i in range(5):
                record(GitStore(store.path), offset + i, text=f"{offset + i}\n")
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(o,)) for o in (100, 200, 300)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(store.recorded_trials()) == 15
    assert time.monotonic() - started < 60
