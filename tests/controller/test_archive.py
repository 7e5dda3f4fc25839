"""Candidates order so that min() is the best; parent selection explores the frontier without fixating."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from controller.store.archive import Archive, Candidate, Operation
from sandbox.spec import RunStatus


def cand(trial: int, bpb: float | None, **kw) -> Candidate:
    status = kw.pop("status", RunStatus.OK if bpb is not None else RunStatus.CRASHED)
    return Candidate(
        trial=trial,
        commit=f"{trial:040x}",
        parent_trial=kw.pop("parent_trial", 0 if trial else None),
        tier=kw.pop("tier", "proxy"),
        status=status,
        val_bpb=bpb,
        **kw,
    )


def test_min_prefers_eligible_then_bpb_then_bytes_then_trial():
    crashed = cand(1, None)
    over_size = cand(2, 1.10, status=RunStatus.OVER_SIZE)
    infeasible = cand(3, 1.15, feasible=False)
    suspicious = cand(4, 1.05, suspicious="rows not normalized")
    good_big = cand(5, 1.20, artifact_bytes=15_900_000)
    good_small = cand(6, 1.20, artifact_bytes=15_000_000)
    good_small_late = cand(7, 1.20, artifact_bytes=15_000_000)
    worse = cand(8, 1.30)
    everyone = [crashed, over_size, infeasible, suspicious, good_big, good_small, good_small_late, worse]
    assert min(everyone) is good_small
    ranked = sorted(everyone)
    assert ranked[:4] == [good_small, good_small_late, good_big, worse]
    assert not any(c.eligible for c in ranked[4:])


def test_mean_over_seeds_becomes_val_bpb():
    c = cand(1, None, status=RunStatus.OK, seed_bpbs=(1.2, 1.3, 1.1))
    assert c.val_bpb == pytest.approx(1.2)


def test_ok_candidate_needs_a_score_and_scores_must_be_finite():
    with pytest.raises(ValueError, match="needs val_bpb"):
        cand(1, None, status=RunStatus.OK)
    with pytest.raises(ValueError, match="not finite"):
        cand(1, float("nan"))


def test_frontier_is_the_best_k_eligible_of_one_tier():
    archive = Archive(
        [cand(0, 1.30), cand(1, 1.20), cand(2, 1.25), cand(3, 1.10, tier="full"), cand(4, None)]
    )
    assert [c.trial for c in archive.frontier(2, tier="proxy")] == [1, 2]
    assert [c.trial for c in archive.frontier(10)] == [3, 1, 2, 0]
    assert archive.best("full").trial == 3


def test_re_adding_a_trial_replaces_it():
    archive = Archive([cand(0, 1.3), cand(1, 1.2)])
    archive.add(cand(1, 1.2, confirmed=True))
    assert len(archive) == 2 and archive.get(1).confirmed
    assert archive.incumbent().trial == 1


def test_incumbent_is_the_best_confirmed():
    archive = Archive([cand(0, 1.30, confirmed=True), cand(1, 1.20), cand(2, 1.25, confirmed=True)])
    assert archive.incumbent().trial == 2
    assert Archive([cand(0, 1.3)]).incumbent() is None


def test_children_of_counts_failed_children_too():
    archive = Archive([cand(0, 1.3), cand(1, None, parent_trial=0), cand(2, 1.2, parent_trial=0)])
    assert [c.trial for c in archive.children_of(0)] == [1, 2]
    assert archive.children_of(2) == []


def test_select_parent_is_deterministic_under_a_seeded_rng():
    archive = Archive([cand(t, 1.0 + t / 10) for t in range(6)])
    draws_a = [archive.select_parent(random.Random(3), k=4, child_bonus=1.0).trial for _ in range(5)]
    rng_b, rng_c = random.Random(42), random.Random(42)
    seq_b = [archive.select_parent(rng_b, 4, 1.0).trial for _ in range(50)]
    seq_c = [archive.select_parent(rng_c, 4, 1.0).trial for _ in range(50)]
    assert len(set(draws_a)) == 1 and seq_b == seq_c


def test_select_parent_prefers_better_but_picks_every_frontier_member():
    archive = Archive([cand(t, 1.0 + t / 10) for t in range(8)])
    rng = random.Random(0)
    counts = Counter(archive.select_parent(rng, k=4, child_bonus=1.0).trial for _ in range(4000))
    assert set(counts) == {0, 1, 2, 3}  # only the frontier, all of it
    assert counts[0] > counts[1] > counts[2] > counts[3] > 200


def test_child_bonus_shifts_picks_towards_untried_members():
    parents = [cand(0, 1.00), cand(1, 1.01)]
    children = [cand(10 + i, 1.5, parent_trial=0) for i in range(20)]
    archive = Archive(parents + children)
    rng = random.Random(1)
    with_bonus = Counter(archive.select_parent(rng, k=2, child_bonus=4.0).trial for _ in range(3000))
    without = Counter(archive.select_parent(rng, k=2, child_bonus=0.0).trial for _ in range(3000))
    assert with_bonus[1] > with_bonus[0]  # the untried runner-up now gets more picks
    assert without[0] > without[1]  # rank alone prefers the best
    assert with_bonus[0] > 300  # but the heavily tried best is never abandoned


def test_pending_children_count_like_recorded_ones():
    archive = Archive([cand(0, 1.00), cand(1, 1.01, parent_trial=None)])
    weights = dict((c.trial, w) for c, w in archive.parent_weights(2, 1.0, pending_children={0: 3}))
    assert weights[0] == pytest.approx(1.0 * (1 + 1 / 4))
    assert weights[1] == pytest.approx(0.5 * 2)


def test_select_parent_without_eligible_candidates_says_what_to_do():
    archive = Archive([cand(0, None)])
    with pytest.raises(LookupError, match="score the seed program first"):
        archive.select_parent(random.Random(0), 4, 1.0)


def test_operation_is_a_closed_set():
    assert Operation("tune") is Operation.TUNE
    with pytest.raises(ValueError):
        Operation("crossover")
