"""Claims more steps than it trained: its curve logs 4 steps, its result.json says 100."""

import json
import os

import unigram_trainer as base

KNOBS = []

base.main()
if os.environ.get("GOLF_PHASE", "all") in ("train", "all"):
    path = os.path.join(base.out_dir(), "result.json")
    with open(path) as f:
        report = json.load(f)
    base.write_json(path, {**report, "steps": 100})
