"""Hostile: reads every other process's environment, looking for the harness's API key.

Prints what it found (``environ scan: {...}``) and then behaves honestly. Expected: a confined sandbox
shows it no process but its own, so it finds nothing.
"""

import json
import os

import unigram_trainer

KNOBS = []

found = {}
pids = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
for pid in pids:
    if pid == os.getpid():
        continue
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            variables = f.read().split(b"\0")
    except OSError:
        continue
    for variable in variables:
        name, _, value = variable.partition(b"=")
        if name in (b"OPENAI_API_KEY",):
            found[f"{pid}:{name.decode()}"] = value.decode(errors="replace")
print("environ scan: " + json.dumps({"processes": len(pids), "found": found}), flush=True)
unigram_trainer.main()
