"""How the controller uses the integrity probes: what a parent of record needs, how a suspicious gain is
held until the full probe verifies it, how a failed confirm run discredits a program for good, and which
harness numbers a result is judged against."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from controller.config import GPU_INTEGRITY, TierConfig
from controller.search.confirm import ConfirmBook, judge_integrity
from controller.search.trial import TrialPlan, knob_overrides, plausibility_for
from controller.store.archive import Archive, Candidate, Operation
from controller.store.records import (
    candidate_attrs,
    rebuild_archive,
    with_extra_seed,
)
from controller.store.trial_attrs import TrialAttrs
from sandbox.knobs import Knob
from sandbox.spec import IntegrityCheck, IntegrityReport, ProbeKind, RunResult, RunStatus
from tests.controller.test_records import record, study  # noqa: F401  (the study fixture)


def cand(trial: int, bpb: float | None, parent: int | None = 0, **fields) -> Candidate:
    status = fields.pop("status", RunStatus.OK if bpb is not None else RunStatus.CRASHED)
    return Candidate(
        trial=trial,
        commit=f"{trial:040x}",
        parent_trial=parent,
        tier=fields.pop("tier", "proxy"),
        status=status,
        seed_bpbs=(bpb,) if bpb is not None else (),
        seed_val_losses=(bpb,) if bpb is not None else (),
        operation=fields.pop("operation", Operation.SEED if parent is None else Operation.MUTATE),
        **fields,
    )


def probe(kind: ProbeKind) -> IntegrityReport:
    return IntegrityReport(
        probe=kind,
        cut=10,
        probe_targets=20,
        compared=10,
        changed=0,
        max_abs_change=0.0,
        mean_change=0.0,
        rows_checked=4,
        probe_seconds=0.1,
        digest="0" * 64,
    )


def test_a_suspicious_candidate_is_held_until_verified_and_a_discredited_one_never_returns():
    held = cand(1, 1.0, suspicious="beats the parent's 1.5 by more than 0.1")
    assert held.held and not held.eligible
    verified = cand(1, 1.0, suspicious=held.suspicious, verified=True)
    assert verified.eligible and not verified.held
    gone = cand(1, 1.0, suspicious="trial 5 (a confirm run) failed: ...", verified=True, discredited=True)
    assert not gone.eligible and not gone.held
    assert cand(2, 1.1).eligible  # an unsuspicious prefix-probed result may be a parent


def test_a_verifying_confirm_run_clears_the_hold_and_a_failing_one_discredits_both_records():
    archive = Archive([cand(0, 1.5, parent=None), cand(1, 1.0, suspicious="too good")])
    source = archive.get(1)
    passed = RunResult(
        status=RunStatus.OK,
        val_bpb=1.01,
        val_loss=0.7,
        probes=[probe(ProbeKind.PREFIX), probe(ProbeKind.FULL)],
    )
    assert judge_integrity(archive, 7, source, None, passed) == TrialAttrs(verifies=1)
    assert archive.get(1).eligible and archive.get(1).verified

    prefix_only = RunResult(status=RunStatus.OK, val_bpb=1.01, val_loss=0.7, probes=[probe(ProbeKind.PREFIX)])
    archive.add(cand(3, 1.0, suspicious="too good"))
    assert (
        judge_integrity(archive, 8, archive.get(3), None, prefix_only).written() == {}
    )  # not a verification
    assert archive.get(3).held

    record_on_full = cand(4, 1.02, parent=1, tier="full", operation=Operation.CONFIRM)
    archive.add(record_on_full)
    failed = RunResult(
        status=RunStatus.INVALID,
        reason="integrity check 'causality' failed: 9 of the 10 NLL values ...",
        failed_check=IntegrityCheck.CAUSALITY,
    )
    verdict = judge_integrity(archive, 9, archive.get(1), record_on_full, failed)
    assert verdict.discredits is not None and verdict.discredits.trials == (1, 4)
    for trial in (1, 4):
        assert not archive.get(trial).eligible and archive.get(trial).discredited
        assert "trial 9 (a confirm run) failed: integrity check 'causality'" in archive.get(trial).suspicious
    crashed = RunResult(status=RunStatus.CRASHED, reason="eval phase exited with code 1")
    assert (
        judge_integrity(archive, 10, archive.get(0), None, crashed).written() == {}
    )  # a crash proves nothing


def test_verifications_and_discredits_survive_a_rebuild(study):  # noqa: F811
    record(study, 1.5, {"candidate": candidate_attrs(cand(0, 1.5, parent=None))})
    record(study, 1.0, {"candidate": candidate_attrs(cand(1, 1.0, suspicious="too good"))})
    record(study, 1.1, {"candidate": candidate_attrs(cand(2, 1.1))})
    record(
        study,
        1.01,
        {"confirm_of": 1, "val_bpb": 1.01, "val_loss": 1.01, "verifies": 1, "operation": "confirm"},
    )
    record(study, None, {"discredits": {"trials": [2], "reason": "trial 4 (a confirm run) failed: x"}})

    archive = rebuild_archive(study.trials())

    assert archive.get(1).verified and archive.get(1).eligible and archive.get(1).seed_bpbs == (1.0, 1.01)
    assert archive.get(2).discredited and "trial 4" in archive.get(2).suspicious
    assert [c.trial for c in archive.frontier(3)] == [1, 0]


class _Tier:
    seeds_to_confirm = 2
    min_delta_nats = 0.0
    p_value = 0.5


class _Search:
    confirm_tier = explore_tier = "proxy"


class _Config:
    search = _Search()
    confirm = _Tier()


def test_a_held_candidate_is_challenged_and_cannot_win_unverified():
    seed = cand(0, 1.5, parent=None, confirmed=True, verified=True)
    held = cand(1, 1.0, suspicious="too good")
    archive = Archive([seed, held])
    book = ConfirmBook(_Config())
    plans = book.after_explore(archive, held)
    assert [(p.operation, p.confirm_source.trial) for p in plans] == [
        (Operation.CONFIRM, 1),
        (Operation.CONFIRM, 0),
    ]
    # Both sides got their second seed, but the challenger was never verified: no winner.
    archive.add(with_extra_seed(archive.get(1), 1.0, 0.9))
    archive.add(with_extra_seed(archive.get(0), 1.5, 1.4))
    for plan in plans:
        book.ran(plan.confirm_source)
    assert book.judge(archive) == []


def test_plausibility_references_are_the_parent_and_the_lineage_seed_on_the_same_tier():
    from controller.config import load_campaign

    config = load_campaign("experiments/demo.toml", check_paths=False)
    seed, child = cand(0, 2.6, parent=None), cand(1, 2.5)
    seed_on_smoke = cand(2, 3.0, parent=0, tier="smoke", operation=Operation.CONFIRM)
    archive = Archive([seed, child, seed_on_smoke])
    on_proxy = plausibility_for(config, archive, TrialPlan(Operation.MUTATE, "proxy", child))
    assert (on_proxy.parent_bpb, on_proxy.seed_bpb) == (2.5, 2.6)
    on_smoke = plausibility_for(config, archive, TrialPlan(Operation.MUTATE, "smoke", child))
    assert (on_smoke.parent_bpb, on_smoke.seed_bpb) == (None, 3.0)  # the seed's own smoke record
    first = plausibility_for(config, archive, TrialPlan(Operation.SEED, "proxy", None))
    assert (first.parent_bpb, first.seed_bpb, first.floor_bpb) == (None, None, 0.5)


def test_the_harness_sequence_length_and_probe_settings_come_from_the_tier():
    tier = TierConfig(train_seconds=10, eval_seconds=10, knobs={"EVAL_SEQ_LEN": 256})
    assert tier.harness_eval_seq_len() == 256
    assert TierConfig(train_seconds=10, eval_seconds=10).harness_eval_seq_len() == 1024
    knobs = [
        Knob(name="EVAL_SEQ_LEN", type="int", default=1024, low=64, high=4096),
        Knob(name="LR", type="float", default=0.1, low=0.01, high=1.0),
    ]
    plain = TierConfig(train_seconds=10, eval_seconds=10)
    assert knob_overrides(plain, "proxy", knobs) == {"EVAL_SEQ_LEN": "1024"}  # fixed, never sampled
    gpu, cpu = (
        TierConfig(train_seconds=10, eval_seconds=10),
        TierConfig(device="cpu", train_seconds=10, eval_seconds=10),
    )
    assert gpu.integrity_settings(full=False) == GPU_INTEGRITY
    assert cpu.integrity_settings(full=False).max_changed_fraction == 0.0  # exact on the CPU
    assert cpu.integrity_settings(full=True).probe is ProbeKind.FULL
    with pytest.raises(ValidationError, match="give one of them"):
        TierConfig(train_seconds=10, eval_seconds=10, eval_seq_len=512, knobs={"EVAL_SEQ_LEN": 1024})
