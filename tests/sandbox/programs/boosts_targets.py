"""Hostile: NLL values better than its model, backed by rows built around each target.

``BOOST=unchecked`` (the old hole): when GOLF_CHECK_POSITIONS is given, those positions are scored
honestly and every other target is given ``exp(-0.98 * nll)`` of probability mass, so the rows it dumps
agree with the NLL file at every checked position. ``BOOST=everywhere``: every row is built that way,
so rows and NLL always agree, but each distribution depends on the target it scores."""

import math
import os

import unigram_trainer as base

KNOBS = []

MODE = os.environ.get("BOOST", "unchecked")
FACTOR = 0.98


def boosted(logp, target):
    """A normalized row that gives ``target`` probability exp(FACTOR * logp[target])."""
    p_target = math.exp(logp[target])
    wanted = math.exp(FACTOR * logp[target])
    scale = (1 - wanted) / (1 - p_target)
    row = [lp + math.log(scale) for lp in logp]
    row[target] = math.log(wanted)
    return row


def boosting(val, logp, n):
    asked = set(base.check_positions() or []) if MODE == "unchecked" else set()
    return lambda position: logp if position in asked else boosted(logp, val[position + 1])


base.main(boosting)
