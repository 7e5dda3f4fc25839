"""Shared replay: several processes serve one replay file, each line once in all (agent.replay)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from agent.errors import ProposerExhausted
from agent.proposal import Proposal
from agent.proposers import ReplayProposer
from tests.agent.conftest import check_program


def knob_lines(path, count: int):
    lines = [{"hypothesis": f"line {n}", "knobs": {"MATRIX_LR": f"0.0{n}"}} for n in range(1, count + 1)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def serve_all(proposer: ReplayProposer, context) -> list[str]:
    served = []
    while True:
        try:
            result = proposer.propose(context, check_program)
        except ProposerExhausted:
            return served
        assert isinstance(result, Proposal)
        served.append(result.hypothesis)


def test_lines_claimed_elsewhere_are_skipped_and_the_cursor_passes_them(tmp_path, context):
    path, cursor = knob_lines(tmp_path / "replay.jsonl", 5), tmp_path / "replay.cursor"
    offered: list[int] = []

    def claim(entry: int) -> bool:
        offered.append(entry)
        return entry % 2 == 1  # another process owns the even lines

    proposer = ReplayProposer(path, cursor_path=cursor, claim=claim)
    assert serve_all(proposer, context) == ["line 1", "line 3", "line 5"]
    assert offered == [1, 2, 3, 4, 5]  # each line offered once; none after exhaustion
    assert cursor.read_text().strip() == "5"


def test_a_claim_that_raises_leaves_the_line_for_the_next_call(tmp_path, context):
    path = knob_lines(tmp_path / "replay.jsonl", 2)
    failures = [ConnectionError("remote unreachable")]

    def claim(entry: int) -> bool:
        if failures:
            raise failures.pop()
        return True

    proposer = ReplayProposer(path, claim=claim)
    with pytest.raises(ConnectionError):
        proposer.propose(context, check_program)
    assert proposer.position == 0
    assert serve_all(proposer, context) == ["line 1", "line 2"]


def test_racing_processes_with_an_atomic_claim_serve_each_line_once(tmp_path, context):
    """Three proposers (as three workers) race through one file; the claim is the only shared state."""
    path = knob_lines(tmp_path / "replay.jsonl", 30)
    owners: dict[int, int] = {}
    guard = threading.Lock()
    # Every worker's first claim waits for the others', so none runs through the file before the
    # rest have started (a loaded CI machine starts threads late).
    everyone_started = threading.Barrier(3, timeout=30)

    def claim_for(worker: int):
        first = [True]

        def claim(entry: int) -> bool:
            if first:
                first.clear()
                everyone_started.wait()
            time.sleep(0.002)  # as a push takes a while: the threads interleave
            with guard:  # create-if-absent, as a git ref pushed with an empty lease is
                won = owners.setdefault(entry, worker) == worker
            if won:  # and the winner then runs its trial while the others go on to the next line
                time.sleep(0.02)
            return won

        return claim

    served: dict[int, list[str]] = {}
    proposers = {w: ReplayProposer(path, claim=claim_for(w)) for w in range(3)}
    threads = [
        threading.Thread(target=lambda w=w: served.__setitem__(w, serve_all(proposers[w], context)))
        for w in proposers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(set(owners.values())) > 1, "the threads did not race"
    everything = [h for lines in served.values() for h in lines]
    assert sorted(everything) == sorted(f"line {n}" for n in range(1, 31))
    for worker, lines in served.items():
        assert lines == [f"line {n}" for n, owner in sorted(owners.items()) if owner == worker]


def test_without_a_claim_every_line_is_served(tmp_path, context):
    path = knob_lines(tmp_path / "replay.jsonl", 3)
    assert serve_all(ReplayProposer(path), context) == ["line 1", "line 2", "line 3"]
