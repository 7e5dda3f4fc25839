"""The confirm stage's statistics: a one-sided Welch t-test, with the Student-t tail computed here.

The challenge accepts a record when it beats the previous one by at least 0.005 nats with p < 0.01
over several seeds, and its organizers used one-sided Welch tests (CHALLENGE.md). So the values
compared are **val_loss in nats per token**, one per seed (``Candidate.seed_val_losses``), and
``min_delta`` is in the same unit. BPB is the same quantity rescaled by a constant for a fixed
validation set (bpb = nats / ln 2 / bytes-per-token), so passing BPB lists works too if ``min_delta``
is converted with :func:`nats_to_bpb`.

scipy is not a dependency; the t tail comes from the regularized incomplete beta function by its
continued fraction (Numerical Recipes, 3rd ed., §6.4, ``betacf``, evaluated with the modified Lentz
method of §5.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITERATIONS = 300


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) for 0 <= x <= 1 and a, b > 0."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x = {x} must lie in [0, 1]")
    if a <= 0 or b <= 0:
        raise ValueError(f"a = {a} and b = {b} must be positive")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    # I_x(a, b) = 1 - I_{1-x}(b, a) on the other side (NR §6.4).
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(x, a, b) / a
    return 1.0 - front * _beta_continued_fraction(1.0 - x, b, a) / b


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction for I_x(a, b) (NR eq. 6.4.5), by the modified Lentz method."""
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITERATIONS + 1):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),  # even step d_{2m}
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),  # odd step d_{2m+1}
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            step = c * d
            h *= step
        if abs(step - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for x={x}, a={a}, b={b}")


def student_t_sf(t: float, dof: float) -> float:
    """P(T > t) for Student's t with ``dof`` (> 0, not necessarily whole) degrees of freedom."""
    if dof <= 0 or math.isnan(dof):
        raise ValueError(f"degrees of freedom {dof} must be positive")
    if math.isnan(t):
        raise ValueError("t is NaN")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    # P(|T| > |t|) = I_{dof/(dof+t^2)}(dof/2, 1/2)  (NR eq. 6.14.10)
    two_sided = regularized_incomplete_beta(dof / (dof + t * t), dof / 2.0, 0.5)
    return 0.5 * two_sided if t > 0 else 1.0 - 0.5 * two_sided


@dataclass(frozen=True)
class WelchResult:
    """H1: mean(incumbent) - mean(candidate) > min_delta (lower loss is better).

    ``p_value`` is 1.0 and ``reason`` says why when the test cannot be made (fewer than two values
    on a side). With zero spread on both sides the result is decided by the means alone (p is 0 or 1)
    and ``reason`` says so: the seeds did not change the outcome, so no noise could be measured.
    """

    t: float
    dof: float
    p_value: float
    delta_mean: float  # mean(incumbent) - mean(candidate); positive means the candidate is better
    min_delta: float
    n_candidate: int
    n_incumbent: int
    reason: str = ""

    def passes(self, p_threshold: float) -> bool:
        """The candidate is promoted: the test could be made and p is below ``p_threshold``."""
        testable = self.n_candidate >= 2 and self.n_incumbent >= 2
        return testable and self.delta_mean > self.min_delta and self.p_value < p_threshold


def welch_one_sided(
    candidate: Sequence[float], incumbent: Sequence[float], min_delta: float = 0.0
) -> WelchResult:
    """One-sided Welch t-test that ``candidate`` beats ``incumbent`` by more than ``min_delta``.

    Values are per-seed losses where lower is better (val_loss in nats; see the module docstring).
    Raises ``ValueError`` for empty samples, non-finite values or a negative ``min_delta``.
    """
    for name, sample in (("candidate", candidate), ("incumbent", incumbent)):
        if len(sample) == 0:
            raise ValueError(f"the {name} sample is empty; give one loss per seed")
        if not all(math.isfinite(v) for v in sample):
            raise ValueError(f"the {name} sample {list(sample)} holds a non-finite value")
    if not math.isfinite(min_delta) or min_delta < 0:
        raise ValueError(f"min_delta = {min_delta} must be a finite value >= 0")
    n_c, n_i = len(candidate), len(incumbent)
    mean_c, mean_i = math.fsum(candidate) / n_c, math.fsum(incumbent) / n_i
    delta = mean_i - mean_c

    def result(t: float, dof: float, p: float, reason: str = "") -> WelchResult:
        return WelchResult(t, dof, p, delta, min_delta, n_c, n_i, reason)

    if n_c < 2 or n_i < 2:
        return result(math.nan, math.nan, 1.0, f"needs at least 2 seeds per side (have {n_c} and {n_i})")
    var_c = math.fsum((v - mean_c) ** 2 for v in candidate) / (n_c - 1)
    var_i = math.fsum((v - mean_i) ** 2 for v in incumbent) / (n_i - 1)
    se_c, se_i = var_c / n_c, var_i / n_i
    standard_error = math.sqrt(se_c + se_i)
    excess = delta - min_delta
    if standard_error == 0.0:
        won = excess > 0
        return result(
            math.inf if won else -math.inf,
            math.nan,
            0.0 if won else 1.0,
            "zero variance on both sides: the seeds did not change the result; decided by the means",
        )
    t = excess / standard_error
    # Welch-Satterthwaite degrees of freedom; a side with zero spread contributes nothing.
    dof = (se_c + se_i) ** 2 / (
        (se_c**2 / (n_c - 1) if se_c else 0.0) + (se_i**2 / (n_i - 1) if se_i else 0.0)
    )
    return result(t, dof, student_t_sf(t, dof))


def nats_to_bpb(nats_per_token: float, bytes_per_token: float) -> float:
    """Convert a per-token loss (or loss difference) in nats to bits per byte."""
    if bytes_per_token <= 0:
        raise ValueError(f"bytes_per_token = {bytes_per_token} must be positive")
    return nats_per_token / math.log(2) / bytes_per_token
