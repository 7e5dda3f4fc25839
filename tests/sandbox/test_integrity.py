"""The integrity probe's plan and judgement (sandbox.integrity), on synthetic streams and NLL files.

The end-to-end cases (hostile programs through both backends) are in test_contract.py; here each rule
is pinned down on numbers small enough to reason about.
"""

from __future__ import annotations

import numpy as np
import pytest

from sandbox.integrity import IntegrityFailure, ProbePlan, judge_probe, plan_probe
from sandbox.shards import write_shard
from sandbox.spec import IntegrityCheck, IntegritySettings, ProbeKind

VOCAB = 16
S = 8  # eval sequence length
NOISY = IntegritySettings(max_changed_fraction=0.25, max_abs_change=0.5)


@pytest.fixture
def stream(tmp_path):
    """A 4,001-token validation stream (4,000 targets), its NLL file, and a training shard."""
    rng = np.random.default_rng(0)
    val = rng.integers(0, VOCAB, size=4001).astype(np.uint16)
    nll = rng.uniform(0.5, 4.0, size=4000).astype("<f4")
    nll_path = tmp_path / "val_nll.f32"
    nll.tofile(nll_path)
    train = tmp_path / "fineweb_train_000000.bin"
    write_shard(train, rng.integers(0, VOCAB, size=20_000).astype(np.uint16))
    return val, nll, nll_path, [train]


def plan(stream, kind=ProbeKind.PREFIX, salt=b"salt", **settings) -> ProbePlan:
    val, _, nll_path, train = stream
    fields = {"tail_tokens": 64, "rows": 8, **settings}
    return plan_probe(
        nll_path, val, S, IntegritySettings(**fields), VOCAB, kind=kind, train_files=train, salt=salt
    )


def test_a_prefix_probe_keeps_the_stream_to_the_cut_and_changes_the_target_after_it(stream):
    val, _, _, train = stream
    probe = plan(stream)
    assert 200 <= probe.cut <= 400  # within [f/2, f] of the 4,000 targets at f = 0.1
    assert probe.targets % S == 0 and probe.cut + 64 <= probe.targets < probe.cut + 64 + S
    assert probe.tokens.size == probe.targets + 1
    assert np.array_equal(probe.tokens[: probe.cut + 1], val[: probe.cut + 1])
    assert probe.tokens[probe.cut + 1] != val[probe.cut + 1]  # the cut's target changed
    tail = probe.tokens[probe.cut + 1 :].tobytes()
    assert tail in np.fromfile(train[0], dtype="<u2", offset=1024).tobytes()  # training text, spliced
    previous = np.fromfile(train[0], dtype="<u2", offset=1024)
    start = previous.tobytes().index(tail) // 2
    assert previous[start - 1] == val[probe.cut]  # ... where it too follows the token at the cut


def test_rows_cover_the_whole_probe_and_hide_the_cut(stream):
    probe = plan(stream, rows=32)
    positions = probe.positions.tolist()
    assert probe.cut in positions and len(set(positions)) == 32
    assert all(0 <= p < probe.targets for p in positions)
    assert positions != sorted(positions)  # file order says nothing about which one is the cut
    assert any(p > probe.cut for p in positions) and any(p < probe.cut for p in positions)


def test_the_plan_depends_on_the_nll_file_and_the_salt(stream, tmp_path):
    _, nll, nll_path, _ = stream
    first, again, salted = plan(stream), plan(stream), plan(stream, salt=b"other")
    assert (first.cut, first.digest) == (again.cut, again.digest)
    assert salted.digest != first.digest
    (nll + 0.001).astype("<f4").tofile(nll_path)  # another NLL file: another draw
    assert plan(stream).digest != first.digest


def test_a_full_probe_keeps_the_length_and_cuts_near_the_end(stream):
    val, *_ = stream
    probe = plan(stream, ProbeKind.FULL)
    assert probe.tokens.size == val.size and probe.targets == 4000
    assert 4000 - 2 * 64 <= probe.cut <= 4000 - 64
    assert np.array_equal(probe.tokens[: probe.cut + 1], val[: probe.cut + 1])


def write_rows(tmp_path, probe: ProbePlan, probe_nll: np.ndarray, val, *, blind: bool = True):
    """Normalized rows that give ``probe_nll`` at each probe target. ``blind``: the row at the cut gives
    the *original* target the scored NLL too, as a causal model's would."""
    rows = []
    for p in probe.positions.tolist():
        target = int(probe.tokens[p + 1])
        row = np.full(VOCAB, 0.0)
        row[target] = np.exp(-probe_nll[p])
        if blind and p == probe.cut:
            row[int(val[p + 1])] = np.exp(-probe_nll[p]) * 0.999  # what the scored run gave it
        rest = 1.0 - row.sum()
        row[row == 0] = rest / (row == 0).sum()
        rows.append(np.log(row))
    path = tmp_path / "check_rows.f32"
    np.asarray(rows, dtype="<f4").tofile(path)
    return path


def judge(stream, tmp_path, probe, probe_nll, settings=None, *, blind=True, scored=None):
    val, nll, *_ = stream
    scored = nll if scored is None else scored
    if blind:
        scored = scored.copy()
        scored[probe.cut] = -np.log(np.exp(-probe_nll[probe.cut]) * 0.999)
    rows = write_rows(tmp_path, probe, probe_nll, val, blind=blind)
    return judge_probe(
        probe, scored, probe_nll, rows, val, VOCAB, settings or IntegritySettings(), probe_seconds=1.0
    )


def probe_nll_like(stream, probe, change=None) -> np.ndarray:
    """The probe's NLL: the scored values before the cut (optionally changed), anything after it."""
    _, nll, *_ = stream
    out = np.random.default_rng(1).uniform(0.5, 4.0, size=probe.targets).astype(np.float64)
    out[: probe.cut] = nll[: probe.cut]
    if change is not None:
        out[: probe.cut] = change(out[: probe.cut].copy())
    return out


def test_an_honest_probe_passes_with_its_report(stream, tmp_path):
    probe = plan(stream)
    report = judge(stream, tmp_path, probe, probe_nll_like(stream, probe))
    assert (report.compared, report.changed, report.max_abs_change) == (probe.cut, 0, 0.0)
    assert report.rows_checked == 8 and report.probe is ProbeKind.PREFIX


def test_one_changed_value_before_the_cut_fails_causality_exactly_there(stream, tmp_path):
    probe = plan(stream)

    def nudge(values):
        values[17] += 0.01
        return values

    with pytest.raises(IntegrityFailure) as caught:
        judge(stream, tmp_path, probe, probe_nll_like(stream, probe, nudge))
    assert caught.value.check is IntegrityCheck.CAUSALITY
    assert "1 of the" in str(caught.value) and "first at 17" in str(caught.value)


def test_changes_below_the_tolerance_pass(stream, tmp_path):
    probe = plan(stream)
    report = judge(stream, tmp_path, probe, probe_nll_like(stream, probe, lambda v: v * (1 + 1e-6)))
    assert report.changed == 0 and 0 < report.max_abs_change < 1e-4


def test_kernel_noise_passes_when_admitted_and_fails_when_not(stream, tmp_path):
    probe = plan(stream)
    rng = np.random.default_rng(2)

    def noise(values):  # 20% of the values move by up to 0.05 nats, zero-mean
        moved = rng.random(values.size) < 0.2
        values[moved] += rng.uniform(-0.05, 0.05, size=int(moved.sum()))
        return values

    noisy = probe_nll_like(stream, probe, noise)
    assert judge(stream, tmp_path, probe, noisy, NOISY).changed > 0
    with pytest.raises(IntegrityFailure, match="changed when the tokens after it were replaced"):
        judge(stream, tmp_path, probe, noisy)  # the exact default admits none


def test_a_systematic_shift_under_the_noise_allowance_fails(stream, tmp_path):
    """A look-ahead hiding in the noise allowance (20% of the values, 0.05 nats each, as the noise test
    moves them) still lowered the scored NLL on average: it helped only one way."""
    probe = plan(stream)
    moved = np.random.default_rng(3).random(probe.cut) < 0.2

    def shift(values):
        values[moved] += 0.05
        return values

    with pytest.raises(IntegrityFailure, match="before the cut shifted by \\+0.00") as caught:
        judge(stream, tmp_path, probe, probe_nll_like(stream, probe, shift), NOISY)
    assert caught.value.check is IntegrityCheck.CAUSALITY and "not kernel noise" in str(caught.value)


def test_a_gross_change_fails_even_where_noise_is_admitted(stream, tmp_path):
    probe = plan(stream)

    def jump(values):
        values[5] += 2.0
        values[6] -= 2.0  # zero-mean, but no kernel noise moves one value by two nats
        return values

    with pytest.raises(IntegrityFailure, match="moved by 2 nats"):
        judge(stream, tmp_path, probe, probe_nll_like(stream, probe, jump), NOISY)


def test_honest_only_at_the_row_positions_fails_even_where_noise_is_admitted(stream, tmp_path):
    """The probe scores its row positions honestly, the scored run had them 2% low: a handful of
    values, far within the noise allowance, but all moved the same way."""
    probe = plan(stream, rows=32)
    asked = probe.positions[probe.positions < probe.cut]

    def honest_at_rows(values):
        values[asked] *= 1.02
        return values

    with pytest.raises(IntegrityFailure, match="at the probe's row positions"):
        judge(stream, tmp_path, probe, probe_nll_like(stream, probe, honest_at_rows), NOISY)


def test_a_row_built_around_its_target_fails_target_blind(stream, tmp_path):
    probe = plan(stream)
    with pytest.raises(IntegrityFailure) as caught:
        judge(stream, tmp_path, probe, probe_nll_like(stream, probe), blind=False)
    assert caught.value.check is IntegrityCheck.TARGET_BLIND
    assert f"at position {probe.cut:,}" in str(caught.value)


def test_an_unnormalized_row_fails_the_row_check(stream, tmp_path):
    val, nll, *_ = stream
    probe = plan(stream)
    probe_nll = probe_nll_like(stream, probe)
    rows = write_rows(tmp_path, probe, probe_nll, val)
    doubled = np.fromfile(rows, dtype="<f4") + np.log(2.0)
    doubled.astype("<f4").tofile(rows)
    scored = nll.copy()
    scored[probe.cut] = -np.log(np.exp(-probe_nll[probe.cut]) * 0.999)
    with pytest.raises(IntegrityFailure, match="is not normalized") as caught:
        judge_probe(probe, scored, probe_nll, rows, val, VOCAB, IntegritySettings(), probe_seconds=1.0)
    assert caught.value.check is IntegrityCheck.ROWS
