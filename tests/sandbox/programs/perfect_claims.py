"""Hostile: claims a perfect model. Its curve says train loss 0, its NLL file says 0 for every target
and each row puts all probability on its target (normalized, and agreeing with the NLL file)."""

import json
import math
import os

import unigram_trainer as base

KNOBS = []


def perfect(val, logp, n):
    def row_of(position):
        row = [-math.inf] * len(logp)
        row[val[position + 1]] = 0.0
        return row

    return row_of


base.main(perfect)
if os.environ.get("GOLF_PHASE", "all") in ("train", "all"):
    with open(os.path.join(base.out_dir(), "curve.jsonl"), "w") as f:
        for step in range(1, 5):
            f.write(json.dumps({"step": step, "train_loss": 0.0, "elapsed_ms": float(step)}) + "\n")
