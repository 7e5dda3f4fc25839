"""Confirm-stage statistics: the t tail against closed forms and tables, and the A/A false-promotion rate."""

from __future__ import annotations

import math
import random

import pytest

from controller.search.stats import (
    nats_to_bpb,
    regularized_incomplete_beta,
    student_t_sf,
    welch_one_sided,
)


@pytest.mark.parametrize("t", [-3.0, -0.5, 0.0, 0.3, 1.0, 6.314, 31.82])
def test_t_tail_with_one_dof_is_the_cauchy_tail(t):
    assert student_t_sf(t, 1) == pytest.approx(0.5 - math.atan(t) / math.pi, abs=1e-12)


@pytest.mark.parametrize("t", [-2.0, 0.0, 0.8, 2.92, 9.925])
def test_t_tail_with_two_dof_matches_its_closed_form(t):
    assert student_t_sf(t, 2) == pytest.approx(0.5 - t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


# One-sided critical values from a standard t table (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2).
@pytest.mark.parametrize(
    ("t", "dof", "tail"),
    [
        (2.015, 5, 0.05),
        (3.365, 5, 0.01),
        (1.812, 10, 0.05),
        (2.764, 10, 0.01),
        (2.086, 20, 0.025),
        (2.457, 30, 0.01),
        (1.660, 100, 0.05),
    ],
)
def test_t_tail_matches_table_values(t, dof, tail):
    assert student_t_sf(t, dof) == pytest.approx(tail, rel=2e-3)


def test_t_tail_approaches_the_normal_tail_for_many_dof():
    assert student_t_sf(1.959964, 1e6) == pytest.approx(0.025, rel=1e-4)


def test_incomplete_beta_symmetry_and_a_closed_form():
    # I_x(a, 1) = x^a, and I_x(a, b) = 1 - I_{1-x}(b, a).
    assert regularized_incomplete_beta(0.3, 2.5, 1.0) == pytest.approx(0.3**2.5, rel=1e-12)
    assert regularized_incomplete_beta(0.7, 3.0, 4.5) == pytest.approx(
        1 - regularized_incomplete_beta(0.3, 4.5, 3.0), rel=1e-12
    )
    with pytest.raises(ValueError):
        regularized_incomplete_beta(1.5, 1.0, 1.0)


def test_welch_statistic_matches_a_hand_computation():
    candidate, incumbent = [1.0, 1.2, 1.1], [1.5, 1.4, 1.7, 1.6]
    result = welch_one_sided(candidate, incumbent, min_delta=0.1)
    var_c, var_i = 0.01, (0.05**2 + 0.15**2 + 0.15**2 + 0.05**2) / 3  # means 1.1 and 1.55
    se2 = var_c / 3 + var_i / 4
    assert result.delta_mean == pytest.approx(0.45)
    assert result.t == pytest.approx((0.45 - 0.1) / math.sqrt(se2))
    dof = se2**2 / ((var_c / 3) ** 2 / 2 + (var_i / 4) ** 2 / 3)
    assert result.dof == pytest.approx(dof)
    assert result.p_value == pytest.approx(student_t_sf(result.t, dof))
    assert result.passes(0.01)


def test_candidate_that_is_worse_does_not_pass():
    result = welch_one_sided([1.5, 1.6, 1.55], [1.0, 1.1, 1.05])
    assert result.delta_mean < 0 and result.p_value > 0.5
    assert not result.passes(0.05)


def test_gain_below_min_delta_does_not_pass_even_when_certain():
    # A tiny but very consistent gain: significant without a threshold, not beyond 0.005 nats.
    candidate, incumbent = [2.000, 2.0001, 1.9999], [2.003, 2.0031, 2.0029]
    assert welch_one_sided(candidate, incumbent, 0.0).passes(0.01)
    assert not welch_one_sided(candidate, incumbent, 0.005).passes(0.01)


def test_single_seed_cannot_pass():
    result = welch_one_sided([1.0], [2.0, 2.1, 2.2])
    assert result.p_value == 1.0 and "at least 2 seeds" in result.reason
    assert not result.passes(0.5)


def test_zero_variance_is_decided_by_the_means_and_says_so():
    won = welch_one_sided([1.0, 1.0], [1.1, 1.1], min_delta=0.05)
    lost = welch_one_sided([1.0, 1.0], [1.01, 1.01], min_delta=0.05)
    assert won.passes(0.01) and won.p_value == 0.0 and "zero variance" in won.reason
    assert not lost.passes(0.5) and lost.p_value == 1.0


def test_one_sided_zero_variance_still_uses_the_other_side():
    result = welch_one_sided([1.0, 1.0, 1.0], [1.2, 1.3, 1.4])
    assert math.isfinite(result.t) and result.dof == pytest.approx(2.0)


@pytest.mark.parametrize("bad", [[], [1.0, math.nan]])
def test_bad_samples_are_rejected_with_their_name(bad):
    with pytest.raises(ValueError, match="candidate"):
        welch_one_sided(bad, [1.0, 2.0])


def test_aa_check_false_promotion_rate_is_near_alpha():
    """Candidates that change only the seed must not be promoted more often than alpha.

    2000 repetitions of 3 seeds against 3 seeds from the same normal distribution (min_delta = 0): the
    promotion count must lie within four binomial standard deviations of 2000 * alpha.
    """
    rng = random.Random(20260318)
    repetitions = 2000
    for alpha in (0.05, 0.01):
        promoted = 0
        for _ in range(repetitions):
            candidate = [rng.gauss(3.0, 0.01) for _ in range(3)]
            incumbent = [rng.gauss(3.0, 0.01) for _ in range(3)]
            promoted += welch_one_sided(candidate, incumbent, 0.0).passes(alpha)
        expected = repetitions * alpha
        tolerance = 4 * math.sqrt(repetitions * alpha * (1 - alpha))
        assert abs(promoted - expected) <= tolerance, (alpha, promoted)


def test_aa_check_with_the_challenge_bar_promotes_almost_never():
    rng = random.Random(5)
    promoted = sum(
        welch_one_sided(
            [rng.gauss(3.0, 0.002) for _ in range(3)], [rng.gauss(3.0, 0.002) for _ in range(3)], 0.005
        ).passes(0.01)
        for _ in range(2000)
    )
    assert promoted <= 2


def test_real_gain_well_above_the_bar_is_promoted_most_of_the_time():
    rng = random.Random(11)
    promoted = sum(
        welch_one_sided(
            [rng.gauss(2.98, 0.002) for _ in range(3)], [rng.gauss(3.0, 0.002) for _ in range(3)], 0.005
        ).passes(0.01)
        for _ in range(500)
    )
    assert promoted / 500 > 0.8


def test_nats_to_bpb_uses_bits_and_bytes():
    # 0.005 nats/token at 2.4 bytes/token (roughly the sp1024 validation set) in bits per byte.
    assert nats_to_bpb(0.005, 2.4) == pytest.approx(0.005 / math.log(2) / 2.4)
    with pytest.raises(ValueError):
        nats_to_bpb(0.005, 0.0)
