"""Hostile: forks sleeping children as fast as it can (bounded, to spare a shared test machine).

Expected: the harness bounds or kills them all (timeout or crash), nothing left running.
"""

import os
import time

KNOBS = []

attempts = int(os.environ.get("FORK_ATTEMPTS", "300"))
started = 0
for _ in range(attempts):
    try:
        pid = os.fork()
    except OSError as exc:
        print(f"fork refused after {started} children: {exc}", flush=True)
        break
    if pid == 0:
        time.sleep(120)
        os._exit(0)
    started += 1
print(f"started {started} children", flush=True)
while True:
    time.sleep(0.05)
