"""Honest control: legal score-first test-time training. The stream is scored in chunks of ``TTT_CHUNK``
targets, each with the artifact's unigram mixed with the counts of the targets already scored; only
then are the chunk's own targets added to the counts (score first, then update, one pass). The NLL of
target p depends only on val[0..p+1], so the integrity probe must accept it."""

import math
import os

import unigram_trainer as base

KNOBS = []

CHUNK = int(os.environ.get("TTT_CHUNK", "256"))
WEIGHT = 0.5


def score_first(val, logp, n):
    vocab = len(logp)
    counts = [0] * vocab
    seen = 0
    rows = []
    for start in range(0, n, CHUNK):
        if seen:
            total = seen + 0.5 * vocab
            mixed = [
                math.log((1 - WEIGHT) * math.exp(lp) + WEIGHT * (c + 0.5) / total)
                for lp, c in zip(logp, counts, strict=True)
            ]
            rows.append(base.normalized(mixed))
        else:
            rows.append(logp)
        for position in range(start, min(start + CHUNK, n)):  # now learn from what was just scored
            counts[val[position + 1]] += 1
            seen += 1
    return lambda position: rows[position // CHUNK]


base.main(score_first)
