"""The integrity probe: proof that a score is causal, comes from the artifact alone and is backed by
normalized distributions that do not peek at their targets (docs/contract.md, "What the harness does
with it").

For a causal scorer -- legal score-first test-time training included -- the NLL of target ``p``
depends only on ``val[0..p+1]``. After the scored eval has written its NLL file, the harness draws a
cut ``c`` (anywhere: inside an eval window as well as at a sequence boundary) and builds a probe
stream: ``val[0..c]`` unchanged, then text from the training split. It runs the
program's eval phase on it, in a fresh sandbox that sees only the artifact and that stream, and asks
for the full log-probability rows at positions it chose only now. Then:

- **causality**: ``NLL[0..c)`` must equal the scored run's. A program that adapted on the whole
  validation stream, scored from something the artifact does not hold (an in-memory model of an
  ``all`` run, a file left by the scored eval), or wrote NLL values it cannot reproduce, changes them.
- **rows**: every row is a normalized distribution that gives the probe's own NLL at its target.
  The positions are unknown to the scored eval, so "honest only where checked" cannot work.
- **target-blind**: the row at ``c`` has an unchanged context but a changed target; scoring the
  *original* target with it must give the scored run's NLL there. A distribution built around its
  target (the cheapest way to make rows agree with made-up NLL values) fails this.

Everything random here is drawn from SHA-256 of the scored NLL file and a secret salt, so the scored
eval cannot anticipate the cut or the rows. The judgement is pure numpy: :func:`judge_probe` raises
:class:`IntegrityFailure` naming the check, and returns an :class:`~sandbox.spec.IntegrityReport`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sandbox.outputs import ROW_AGREEMENT_ABS, ROW_AGREEMENT_REL, OutputError, read_rows
from sandbox.shards import SHARD_HEADER_BYTES, ShardFormatError, read_shard_tokens
from sandbox.spec import IntegrityCheck, IntegrityReport, IntegritySettings, ProbeKind

_HASH_CHUNK = 1 << 24
_SPLICE_TRIES = 65_536  # training tokens searched for a natural splice


class IntegrityFailure(Exception):
    """A check failed; ``reason`` is one line that names it (the result's status reason)."""

    def __init__(self, check: IntegrityCheck, reason: str) -> None:
        super().__init__(f"integrity check '{check}' failed: {reason}")
        self.check = check


@dataclass(frozen=True)
class ProbePlan:
    """One probe: its stream, its cut and the rows it asks for."""

    kind: ProbeKind
    cut: int  # the first probe target that differs from the scored stream's
    tokens: np.ndarray  # uint16, the probe's validation stream (scored targets: tokens[1..targets])
    targets: int  # NLL values the probe eval must write: ((len(tokens)-1)//S)*S
    positions: np.ndarray  # int64 row positions into the probe's NLL, shuffled; the cut is one of them
    digest: str


def file_digest(path: Path, salt: bytes) -> str:
    """SHA-256 of a file's bytes followed by ``salt``, as hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    digest.update(salt)
    return digest.hexdigest()


def plan_probe(
    scored_nll_path: Path,
    val_tokens: np.ndarray,
    eval_seq_len: int,
    settings: IntegritySettings,
    vocab_size: int,
    *,
    kind: ProbeKind,
    train_files: list[Path],
    salt: bytes,
) -> ProbePlan:
    """Draw a probe for a scored NLL file of ``((N-1)//S)*S`` values over ``val_tokens``.

    A prefix probe cuts in ``[f/2, f]`` of the scored targets (``f = prefix_fraction``) and ends
    ``tail_tokens`` later, rounded up to whole sequences, so its eval costs about ``0.75 f`` of the
    scored one plus the tail. A full probe keeps the stream's length and cuts within the last
    ``2 * tail_tokens`` targets (at most half of a short stream), so nearly all of the scored NLL is
    compared. The text after the cut
    comes from the training split (see :func:`_replacement`).
    """
    S = eval_seq_len
    N = int(val_tokens.size)
    n = ((N - 1) // S) * S
    if n < 2:
        raise ValueError(f"{N} validation tokens at eval_seq_len {S} leave no room for a probe")
    digest = file_digest(scored_nll_path, salt)
    rng = np.random.default_rng(int(digest[:32], 16))
    tail = settings.tail_tokens
    if kind is ProbeKind.PREFIX:
        high = max(1, min(n - 1, int(settings.prefix_fraction * n)))
        cut = int(rng.integers(max(1, high // 2), high + 1))
        targets = min(n, -(-(cut + tail) // S) * S)
        length = targets + 1
    else:
        tail = max(1, min(tail, n // 4))  # a short stream still compares at least half of itself
        low = max(1, n - 2 * tail)
        cut = int(rng.integers(low, n - tail + 1))
        targets, length = n, N
    tokens = np.empty(length, dtype=np.uint16)
    tokens[: cut + 1] = val_tokens[: cut + 1]
    tokens[cut + 1 :] = _replacement(val_tokens, cut, length - cut - 1, rng, vocab_size, train_files)
    positions = _row_positions(rng, cut, targets, settings.rows)
    return ProbePlan(kind, cut, tokens, targets, positions, digest)


def _replacement(
    val: np.ndarray, cut: int, count: int, rng: np.random.Generator, vocab: int, train_files: list[Path]
) -> np.ndarray:
    """``count`` tokens of other text to follow ``val[cut]``.

    Taken from a random place of the training split, so the probe's token statistics differ from the
    validation stream's (a rotation of the validation suffix would keep them, and hide a look-ahead at
    them) and nothing after the cut repeats text before it. The place is one where the training text
    also follows the token ``val[cut]`` (a splice that reads naturally, so the cut cannot be spotted
    by an unlikely bigram) with another token than ``val[cut+1]``, so the target at the cut changes.
    """
    window = _train_window(train_files, count + _SPLICE_TRIES, rng)
    if window.size > count:
        starts = np.arange(1, min(window.size - count + 1, _SPLICE_TRIES))
        differs = starts[window[starts] != val[cut + 1]]
        natural = differs[window[differs - 1] == val[cut]]
        pool = natural if natural.size else differs
        if pool.size:
            start = int(pool[rng.integers(pool.size)])
            return window[start : start + count]
    # No training text to splice from: the validation suffix rotated, its first token forced to differ.
    out = np.resize(np.roll(val[cut + 1 :], -int(rng.integers(1, max(2, val.size - cut - 1)))), count)
    if out[0] == val[cut + 1]:
        out[0] = (int(val[cut + 1]) + 1) % vocab
    return out


def _train_window(train_files: list[Path], count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` consecutive tokens from a random offset of a random training shard."""
    sizes = []
    for path in train_files:
        try:
            sizes.append(max(0, (path.stat().st_size - SHARD_HEADER_BYTES) // 2))
        except OSError:
            sizes.append(0)
    if not sizes or max(sizes) == 0:
        return np.zeros(0, dtype=np.uint16)
    weights = np.asarray(sizes, dtype=np.float64)
    index = int(rng.choice(len(sizes), p=weights / weights.sum()))
    offset = int(rng.integers(0, max(1, sizes[index] - count + 1)))
    try:
        return read_shard_tokens(train_files[index], max_tokens=offset + count)[offset:]
    except (OSError, ShardFormatError):
        return np.zeros(0, dtype=np.uint16)


def _row_positions(rng: np.random.Generator, cut: int, targets: int, rows: int) -> np.ndarray:
    """The cut and ``rows - 1`` other distinct positions over the whole probe, in random order (so
    nothing about the list gives the cut away)."""
    if rows <= 0:
        return np.zeros(0, dtype="<i8")
    others = rng.choice(targets - 1, size=min(rows - 1, targets - 1), replace=False)
    others = others + (others >= cut)  # skip the cut itself
    positions = np.concatenate([[cut], others]).astype("<i8")
    rng.shuffle(positions)
    return positions


# ----------------------------------------------------------------------------------------- judging


def judge_probe(
    plan: ProbePlan,
    scored_nll: np.ndarray,
    probe_nll: np.ndarray,
    rows_path: Path,
    val_tokens: np.ndarray,
    vocab_size: int,
    settings: IntegritySettings,
    probe_seconds: float,
) -> IntegrityReport:
    """Compare the probe's outputs with the scored run's; raise :class:`IntegrityFailure` on a fault."""
    cut = plan.cut
    scored = np.asarray(scored_nll[:cut], dtype=np.float64)
    delta = np.asarray(probe_nll[:cut], dtype=np.float64) - scored
    changed_mask = np.abs(delta) > settings.nll_abs_tolerance + settings.nll_rel_tolerance * np.abs(scored)
    changed = int(changed_mask.sum())
    largest = float(np.abs(delta).max()) if cut else 0.0
    mean = float(delta.mean()) if cut else 0.0
    if changed > settings.max_changed_fraction * cut:
        first = int(np.flatnonzero(changed_mask)[0])
        raise IntegrityFailure(
            IntegrityCheck.CAUSALITY,
            f"{changed:,} of the {cut:,} NLL values before the cut at position {cut:,} changed when the "
            f"tokens after it were replaced (largest {largest:.4g} nats, mean {mean:+.4g}; first at "
            f"{first:,}: {scored[first]:.6g} scored, {scored[first] + delta[first]:.6g} in the probe): the "
            "scored NLL depends on tokens after the cut, or on something the artifact does not hold",
        )
    if changed:  # within the kernel-noise allowance: the changes must look like noise
        _judge_noise(delta, plan, settings)
    rows_checked = _judge_rows(plan, scored_nll, probe_nll, rows_path, val_tokens, vocab_size, settings)
    return IntegrityReport(
        probe=plan.kind,
        cut=cut,
        probe_targets=plan.targets,
        compared=cut,
        changed=changed,
        max_abs_change=largest,
        mean_change=mean,
        rows_checked=rows_checked,
        probe_seconds=probe_seconds,
        digest=plan.digest,
    )


def _judge_noise(delta: np.ndarray, plan: ProbePlan, settings: IntegritySettings) -> None:
    """Changes allowed as kernel noise must be small and unbiased, overall and at the row positions.

    A systematic change (a look-ahead, or a program honest only where rows are asked) moves the values
    one way; the noise of non-deterministic kernels averages out. The bound on the mean is the larger of
    the floor and ``z`` standard errors.
    """
    largest = float(np.abs(delta).max())
    if largest > settings.max_abs_change:
        at = int(np.abs(delta).argmax())
        raise IntegrityFailure(
            IntegrityCheck.CAUSALITY,
            f"the NLL at position {at:,}, before the cut at {plan.cut:,}, moved by {largest:.4g} nats when "
            f"the tokens after the cut were replaced, more than kernel noise ({settings.max_abs_change} nats)",
        )
    spread = float(delta.std())
    groups = [("before the cut", delta)]
    asked = plan.positions[plan.positions < plan.cut]
    if asked.size:
        groups.append(("at the probe's row positions", delta[asked]))
    for where, values in groups:
        bound = max(settings.max_mean_shift_nats, settings.noise_z * spread / math.sqrt(values.size))
        shift = float(values.mean())
        if abs(shift) > bound:
            raise IntegrityFailure(
                IntegrityCheck.CAUSALITY,
                f"the NLL {where} shifted by {shift:+.4g} nats on average between the scored run and the "
                f"probe ({values.size:,} values, bound {bound:.3g}): a systematic change, not kernel noise",
            )


def _judge_rows(
    plan: ProbePlan,
    scored_nll: np.ndarray,
    probe_nll: np.ndarray,
    rows_path: Path,
    val_tokens: np.ndarray,
    vocab_size: int,
    settings: IntegritySettings,
) -> int:
    positions = plan.positions
    try:
        rows = read_rows(rows_path, positions, vocab_size, plan.tokens, probe_nll)
    except OutputError as exc:
        raise IntegrityFailure(IntegrityCheck.ROWS, str(exc)) from exc
    noisy = settings.max_changed_fraction > 0  # then the two runs may differ by kernel noise
    for row, position in zip(rows, positions.tolist(), strict=True):
        if position > plan.cut:
            continue  # a changed context: the scored run has nothing to compare with
        original = int(val_tokens[position + 1])
        scored = float(scored_nll[position])
        given = -float(row[original])
        tolerance = ROW_AGREEMENT_ABS + ROW_AGREEMENT_REL * abs(scored)
        if noisy:
            tolerance = max(tolerance, settings.max_abs_change)
        if abs(given - scored) <= tolerance:
            continue
        if position == plan.cut:
            raise IntegrityFailure(
                IntegrityCheck.TARGET_BLIND,
                f"at position {position:,} the probe kept the context but changed the target, and its "
                f"distribution there gives the original target NLL {given:.6g} where the scored run has "
                f"{scored:.6g}: the distribution depends on the target it scores",
            )
        raise IntegrityFailure(
            IntegrityCheck.ROWS,
            f"the probe's row at position {position:,} gives the target NLL {given:.6g} but the scored "
            f"run's val_nll.f32 says {scored:.6g}",
        )
    return int(positions.size)
