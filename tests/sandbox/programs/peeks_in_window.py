"""Hostile: a non-causal mask inside each eval window. The distribution for target val[p+1] leans toward
the token two places ahead, val[p+2], whenever that token is an input of the same window of
``EVAL_SEQ_LEN`` (as attention without a causal mask would let it). Every value before a window's end
depends on a later token, so only a cut inside a window, not one at a sequence boundary, exposes it."""

import math
import os

import unigram_trainer as base

KNOBS = []

BOOST = math.log(4.0)


def peeking(val, logp, n):
    seq_len = int(os.environ.get("EVAL_SEQ_LEN", "64"))
    toward = [
        base.normalized([lp + (BOOST if j == t else 0.0) for j, lp in enumerate(logp)])
        for t in range(len(logp))
    ]

    def row_of(position):
        window_end = (position // seq_len + 1) * seq_len  # inputs of this window: val[start..window_end-1]
        return toward[val[position + 2]] if position + 2 < window_end else logp

    return row_of


base.main(peeking)
