"""Hostile: leaves a double-forked, session-detached daemon behind, then behaves honestly.

Expected: the run itself is scored, and the daemon does not outlive it.
"""

import os
import sys
import time

import unigram_trainer

KNOBS = []

if os.environ.get("GOLF_PHASE", "all") in ("train", "all"):
    marker = os.environ.get("HOSTILE_MARKER", "")
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            # The grandchild: re-exec so the marker is in its command line as well as its environment.
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", marker])
        os._exit(0)
    time.sleep(0.1)
unigram_trainer.main()
