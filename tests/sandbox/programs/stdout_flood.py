"""Hostile: floods stdout and stderr with tens of megabytes, then behaves honestly.

Expected: the run is scored and the log stays under the harness's cap.
"""

import os
import sys

import unigram_trainer

KNOBS = []

line = ("flood " * 100 + "\n").encode()
for _ in range(int(os.environ.get("FLOOD_MEGABYTES", "24")) * 1024 * 1024 // len(line)):
    sys.stdout.buffer.write(line)
sys.stdout.flush()
sys.stderr.write("e" * 1_000_000 + "\n")
unigram_trainer.main()
