"""Hostile: in one process (GOLF_PHASE=all) it scores with the model it holds in memory and writes a
much smaller, worse artifact (the counts of the first ``KEEP`` train tokens only), so the bytes it is
counted at are not the model it is scored with. An eval phase from the artifact alone scores worse."""

import array
import os
import zlib

import unigram_trainer as base

KNOBS = []

KEEP = int(os.environ.get("KEEP", "200"))
phase = os.environ.get("GOLF_PHASE", "all")
cfg = base.settings()
if phase in ("train", "all"):
    report = base.train(cfg)
    path = os.path.join(base.artifact_dir(), base.ARTIFACT_NAME)
    with open(path, "rb") as f:
        full = f.read()
    counts = [0] * cfg["VOCAB_SIZE"]
    for token in base.load_split(cfg["DATA_PATH"], "train")[:KEEP]:
        counts[token] += 1
    with open(path, "wb") as f:  # what is counted: a much worse model
        f.write(zlib.compress(array.array("I", counts).tobytes(), 9))
    if phase == "all":
        with open(path + ".held", "wb") as f:  # stands for the weights held in memory
            f.write(full)
        os.replace(path + ".held", path)  # evaluate with the real model ...
        base.evaluate(cfg, report)
        with open(path, "wb") as f:  # ... and leave the small one behind to be measured
            f.write(zlib.compress(array.array("I", counts).tobytes(), 9))
elif phase == "eval":
    base.evaluate(cfg, None)
