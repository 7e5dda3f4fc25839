"""Hostile: never finishes (and keeps a child busy too). Expected: timeout, nothing left running."""

import os
import subprocess
import sys
import time

KNOBS = []

marker = os.environ.get("HOSTILE_MARKER", "")
subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(0.05)", marker])
print("looping forever", flush=True)
while True:
    time.sleep(0.05)
