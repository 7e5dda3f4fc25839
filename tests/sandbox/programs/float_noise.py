"""Honest control: a causal program whose arithmetic is not bitwise reproducible. Each run perturbs its
log-probabilities by a fresh random relative ``NOISE`` (1e-6: float32 reduction-order noise), the same
perturbation for its NLL and its rows, as one forward pass gives both."""

import os
import random

import unigram_trainer as base

KNOBS = []

NOISE = float(os.environ.get("NOISE", "1e-6"))


def noisy(val, logp, n):
    rng = random.Random()  # unseeded: differs between the scored run and the probe
    row = base.normalized([lp * (1 + rng.uniform(-NOISE, NOISE)) for lp in logp])
    return lambda position: row


base.main(noisy)
