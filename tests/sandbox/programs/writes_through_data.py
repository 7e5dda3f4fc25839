"""Hostile: overwrites the start of every shard it is given and the tokenizer, then behaves honestly.

Each attempt is printed (``write <path>: ok`` or the error). Expected: every write is refused and the
harness's data stays byte-identical, so later runs are scored on the same data.
"""

import glob
import os

import unigram_trainer

KNOBS = []

targets = sorted(glob.glob(os.path.join(os.environ["DATA_PATH"], "*"))) + [os.environ["TOKENIZER_PATH"]]
for path in targets:
    try:
        with open(path, "r+b") as f:
            f.seek(1024)  # past a shard's header: the tokens themselves
            f.write(b"\x00\x01" * 256)
        print(f"write {path}: ok", flush=True)
    except OSError as exc:
        print(f"write {path}: refused: {exc}", flush=True)
unigram_trainer.main()
