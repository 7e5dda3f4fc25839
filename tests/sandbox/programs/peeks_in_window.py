"""Hostile: a non-causal mask inside each eval window. The distribution for target val[p+1] leans toward
every token that is a later input of the same window of ``EVAL_SEQ_LEN`` (val[p+2..window_end-1]), as
attention without a causal mask would let it. Every value before a window's end depends on later tokens,
so only a cut inside a window, not one at a sequence boundary, exposes it.

Each row is ``logp + BOOST`` on that set of tokens, renormalized; the NLL and the set's probability mass
are kept per position in one backward pass over each window, so scoring stays linear in the stream.
"""

import math
import os

import unigram_trainer as base

KNOBS = []

BOOST = math.log(4.0)


def peeking(val, logp, n):
    seq_len = int(os.environ.get("EVAL_SEQ_LEN", "64"))
    prob = [math.exp(x) for x in logp]
    scale = math.exp(BOOST) - 1.0
    log_mass = [0.0] * n  # log of the row's normalizer at each position
    leans = [False] * n  # whether the position's own target is among the tokens it leans toward
    for start in range(0, n, seq_len):
        window_end = start + seq_len  # this window's inputs are val[start..window_end-1]
        ahead, mass = set(), 0.0
        for p in range(window_end - 1, start - 1, -1):  # backward: ahead = set(val[p+2 : window_end])
            if p + 2 < window_end and val[p + 2] not in ahead:
                ahead.add(val[p + 2])
                mass += prob[val[p + 2]]
            log_mass[p] = math.log1p(scale * mass)
            leans[p] = val[p + 1] in ahead

    class Row:
        """One position's row, entry by entry: the NLL reads one entry, a check row all of them."""

        def __init__(self, position):
            self.position = position

        def __getitem__(self, token):  # the NLL asks for the target only
            p = self.position
            return logp[token] + (BOOST if leans[p] else 0.0) - log_mass[p]

        def __iter__(self):
            p = self.position
            ahead = set(val[p + 2 : (p // seq_len + 1) * seq_len])
            return (lp + (BOOST if t in ahead else 0.0) - log_mass[p] for t, lp in enumerate(logp))

    return Row


base.main(peeking)
