"""Many workers on one study and one git remote (controller.workers.worker, controller.workers.remote; issue 7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from controller.store.gitstore import GitStore
from controller.workers.remote import SharedRemote
from tests.controller.campaigns import REPO_ROOT, knob_line, write_campaign
from tests.controller.pg import postgres_url  # noqa: F401 (a fixture)

TUNE_ONLY = {"mutate": 0.0, "tune": 1.0, "hypothesis": 0.0, "confirm": 0.0}
REPLAY_THEN_TUNE = {"mutate": 1.0, "tune": 0.0, "hypothesis": 0.0, "confirm": 0.0}


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def shared_campaign(
    folder: Path,
    tiny_data,
    storage: str,
    *,
    name: str,
    max_trials: int,
    sleep: float,
    replay: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """A unigram campaign whose study lives in ``storage`` (each run sleeps ``sleep`` s): tune-only,
    or with ``replay`` lines, mutations from them (then tuning once they are used up)."""
    toml = write_campaign(
        folder,
        dataset_dir=tiny_data.dataset_dir,
        tokenizer_path=tiny_data.tokenizer_path,
        name=name,
        max_trials=max_trials,
        replay=replay,
        operations=REPLAY_THEN_TUNE if replay else TUNE_ONLY,
        # the trainer's eval sleep is searchable (up to 10 s): fixed, so a run takes ``sleep`` s
        proxy_knobs={"SLEEP_SECONDS": sleep, "EVAL_SLEEP_SECONDS": 0.0},
        preflight_smoke=False,
    )
    with toml.open("a", encoding="utf-8") as handle:  # [study] is the file's last table
        handle.write(f"storage = {json.dumps(storage)}\n")
    return toml


def start_worker(toml: Path, storage: str, remote: Path, name: str, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "controller.cli", "worker", str(toml), "--storage", storage]
    command += [
        "--git-remote",
        str(remote),
        "--name",
        name,
        "--heartbeat-seconds",
        "0.5",
        "--grace-seconds",
        "3",
    ]
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # SIGKILL to the group: the worker and its runs die together
        env={**os.environ, "COLUMNS": "200"},
    )


def run_workers(
    toml: Path, storage: str, remote: Path, log_dir: Path, names: tuple[str, ...], *, timeout: float
) -> None:
    """Start one worker per name and require each to exit 0 within ``timeout`` seconds (its log's
    tail is the failure message); none is left running."""
    logs = {name: log_dir / f"{name}.log" for name in names}
    workers = {name: start_worker(toml, storage, remote, name, log) for name, log in logs.items()}
    try:
        for name, proc in workers.items():
            assert proc.wait(timeout=timeout) == 0, logs[name].read_text()[-3000:]
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def remote_refs(remote: Path) -> dict[str, str]:
    lines = git("--git-dir", str(remote), "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    return dict(line.split(" ", 1) for line in lines)


def candidate_refs(refs: dict[str, str]) -> list[tuple[int, str]]:
    out = []
    for ref, commit in refs.items():
        for prefix in ("refs/heads/cand/", "refs/golf/archive/cand/"):
            if ref.startswith(prefix):
                out.append((int(ref.removeprefix(prefix)), commit))
    return out


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.slow
def test_three_workers_share_one_study_and_recover_a_killed_worker(tmp_path, tiny_data, postgres_url):  # noqa: F811
    import optuna

    toml = shared_campaign(tmp_path, tiny_data, postgres_url, name="shared", max_trials=18, sleep=0.8)
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote))
    logs = {name: tmp_path / f"{name}.log" for name in ("w0", "w1", "w2")}
    workers = {name: start_worker(toml, postgres_url, remote, name, log) for name, log in logs.items()}
    try:
        study = wait_for(lambda: _load(optuna, postgres_url, "shared"), 60, "the shared study to exist")

        def victim_trial() -> int | None:
            published = remote_refs(remote)
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                if t.user_attrs.get("worker_name") == "w2" and f"refs/golf/running/{t.number}" in published:
                    return t.number
            return None

        killed = wait_for(victim_trial, 60, "worker w2 to be mid-trial with its program published")
        os.killpg(workers["w2"].pid, signal.SIGKILL)
        workers["w2"].wait(timeout=10)
        for name in ("w0", "w1"):
            assert workers[name].wait(timeout=120) == 0, logs[name].read_text()[-3000:]
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    trials = study.get_trials(deepcopy=False)
    states = {t.number: t.state.name for t in trials}
    assert "RUNNING" not in states.values() and "WAITING" not in states.values(), states
    assert states[killed] == "FAIL"
    reruns = [t for t in trials if t.user_attrs.get("requeued_from") == killed]
    assert len(reruns) == 1, f"trial {killed} was re-queued {len(reruns)} times"
    assert reruns[0].state.name == "COMPLETE" and reruns[0].user_attrs["worker_name"] in ("w0", "w1")
    seed_runs = [t for t in trials if t.user_attrs.get("operation") == "seed"]
    assert len(seed_runs) == 1, "only one worker runs the seed program"

    refs = remote_refs(remote)
    recorded = candidate_refs(refs)
    numbers = [n for n, _ in recorded]
    assert len(numbers) == len(set(numbers)), "a trial has two branches on the remote"
    assert len({c for _, c in recorded}) == len(recorded), "two trials share a commit"
    scored = {t.number: t.value for t in trials if t.state.name == "COMPLETE" and "candidate" in t.user_attrs}
    assert set(numbers) == set(scored), "every scored candidate, and only those, has a branch on the remote"
    workers_seen = {t.user_attrs["worker_name"] for t in trials if t.state.name == "COMPLETE"}
    assert {"w0", "w1"} <= workers_seen
    for number, commit in recorded:
        note = git("--git-dir", str(remote), "notes", "--ref=refs/notes/golf", "show", commit)
        assert json.loads(note)["result"]["val_bpb"] == pytest.approx(scored[number])
        trailer = git(
            "--git-dir", str(remote), "log", "-1", "--format=%(trailers:key=Golf-Trial,valueonly)", commit
        )
        assert trailer.strip() == str(number)
    best = min(scored, key=lambda n: scored[n])
    assert refs["refs/heads/best/1"] == dict(recorded)[best]
    # Every program published while running is gone, the killed worker's too (its re-run is finished).
    assert not [r for r in refs if r.startswith("refs/golf/running/")]

    # A fourth process, on any machine that reaches the storage and the remote, sees the same leaderboard.
    sync = [sys.executable, "-m", "controller.cli", "worker", str(toml), "--storage", postgres_url]
    subprocess.run([*sync, "--git-remote", str(remote), "--sync-only"], cwd=REPO_ROOT, check=True)
    board = subprocess.run(
        [sys.executable, "-m", "controller.cli", "leaderboard", str(toml), "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(board.stdout)
    assert {r["trial"]: r["commit"] for r in rows} == {n: c for n, c in recorded if n in scored}
    assert rows[0]["trial"] == best


@pytest.mark.slow
def test_two_workers_replay_each_line_once_and_leave_no_running_programs(tmp_path, tiny_data, postgres_url):  # noqa: F811
    import optuna

    lines = [knob_line(f"smoothing {s}", SMOOTHING=s) for s in (0.1, 0.2, 0.3, 0.4, 0.6, 0.8)]
    toml = shared_campaign(
        tmp_path, tiny_data, postgres_url, name="replayed", max_trials=10, sleep=0.2, replay=lines
    )
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote))
    run_workers(toml, postgres_url, remote, tmp_path, ("w0", "w1"), timeout=120)

    trials = optuna.load_study(study_name="replayed", storage=postgres_url).get_trials(deepcopy=False)
    replayed = [t.user_attrs["hypothesis"] for t in trials if t.user_attrs.get("proposer") == "replay"]
    # A line whose trial the shared budget refused is kept, by its claimant only, for a later start.
    kept = []
    for name in ("w0", "w1"):
        prepared = tmp_path / "runs" / "workers" / name / "replayed" / "prepared.jsonl"
        if prepared.exists():
            plans = [json.loads(x)["proposal"] or {} for x in prepared.read_text().splitlines()]
            kept += [p["hypothesis"] for p in plans if p.get("proposer") == "replay"]
    assert len(replayed) == len(set(replayed)), f"a replay line ran twice: {sorted(replayed)}"
    assert sorted(replayed + kept) == sorted(line["hypothesis"] for line in lines)
    refs = remote_refs(remote)
    assert {f"refs/golf/claims/replay-{n}" for n in range(1, len(lines) + 1)} <= set(refs)
    assert not [r for r in refs if r.startswith("refs/golf/running/")], "running programs were left behind"


def _load(optuna, url: str, name: str):
    try:
        return optuna.load_study(study_name=name, storage=url)
    except KeyError:
        return None


def test_racing_publishes_keep_every_candidate_note_and_frontier(tmp_path):
    """Two stores recording different trials publish at once: both land, leases stop a stale best/*."""
    remote_path = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote_path))
    seed = {"train.py": "print('seed')\n"}
    first = SharedRemote(GitStore(tmp_path / "a"), str(remote_path))
    first.store.init(seed)
    first.publish_seed()
    second = SharedRemote(GitStore(tmp_path / "b"), str(remote_path))
    second.adopt_seed()
    second.store.init(seed)
    second.publish_seed()
    assert second.store.seed_commit == first.store.seed_commit, "the second worker adopts the shared seed"

    base = first.store.seed_commit
    trailers = {"Golf-Status": "ok"}
    a1 = first.store.record(1, base, {"train.py": "a1\n"}, "a1", "", trailers, '{"n": 1}')
    b2 = second.store.record(2, base, {"train.py": "b2\n"}, "b2", "", trailers, '{"n": 2}')
    # Each believes a different frontier; each push starts from a fresh fetch, so both go through.
    first.publish(lambda: [1])
    retries = second.publish(lambda: [2, 1])
    assert retries == 0  # its first attempt fetched first, so its lease was fresh
    refs = remote_refs(remote_path)
    assert refs["refs/heads/cand/1"] == a1 and refs["refs/heads/cand/2"] == b2
    assert refs["refs/heads/best/1"] == b2 and refs["refs/heads/best/2"] == a1
    for commit, text in ((a1, '{"n": 1}'), (b2, '{"n": 2}')):
        assert git("--git-dir", str(remote_path), "notes", "--ref=refs/notes/golf", "show", commit) == text

    # A push computed from a stale view loses its lease and is retried on top of the new state: the
    # other worker publishes between this one's fetch and its push.
    raced: list[int] = []

    def frontier_while_the_other_publishes() -> list[int]:
        if not raced:
            raced.append(second.publish(lambda: [2]))  # trial 1 leaves the frontier: archived
            assert "refs/heads/cand/1" not in remote_refs(remote_path)
        return [1, 2]

    assert first.publish(frontier_while_the_other_publishes) == 1  # one rejected push, then through
    assert raced == [0]
    refs = remote_refs(remote_path)
    assert refs["refs/heads/best/1"] == a1 and "refs/heads/cand/2" in refs
    first.pull()
    assert first.store.commit_of(2) == b2 and first.store.read_note(b2) == '{"n": 2}'


def test_only_one_claimant_wins(tmp_path):
    remote_path = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote_path))
    claims = []
    for name in ("a", "b", "c"):
        shared = SharedRemote(GitStore(tmp_path / name), str(remote_path))
        shared.adopt_seed()
        shared.store.init({"train.py": "seed\n"})
        shared.publish_seed()
        claims.append(shared.claim("replay-7"))
    assert claims == [True, False, False]
