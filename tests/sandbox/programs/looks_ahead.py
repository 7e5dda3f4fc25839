"""Hostile: illegal test-time training. Before it scores anything, the eval mixes the artifact's unigram
with the unigram statistics of the whole validation stream it was given (``LOOKAHEAD_WEIGHT`` of them),
so every target is scored knowing the tokens after it. A small weight keeps the gain far under the
plausibility gate; its rows are normalized and agree with its NLL file."""

import math
import os

import unigram_trainer as base

KNOBS = []

WEIGHT = float(os.environ.get("LOOKAHEAD_WEIGHT", "0.2"))


def look_ahead(val, logp, n):
    vocab = len(logp)
    counts = [0] * vocab
    for token in val:  # every validation token, the ones after each target included
        counts[token] += 1
    total = len(val) + 0.5 * vocab
    mixed = [
        math.log((1 - WEIGHT) * math.exp(lp) + WEIGHT * (c + 0.5) / total)
        for lp, c in zip(logp, counts, strict=True)
    ]
    row = base.normalized(mixed)
    return lambda position: row


base.main(look_ahead)
