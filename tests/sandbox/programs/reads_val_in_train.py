"""Hostile: peeks at the validation shards during training. Expected: they are not there -> crashed."""

import os

import unigram_trainer

KNOBS = []

if os.environ.get("GOLF_PHASE", "all") == "train":
    unigram_trainer.load_split(os.environ["DATA_PATH"], "val")
unigram_trainer.main()
