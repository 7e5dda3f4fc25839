"""Hostile: hides 40 MB outside the artifact folder while training and looks for it while evaluating.

The train phase writes ``autogolf-stash.bin`` to /tmp, $HOME, its working directory, its GOLF_OUT and
(by path) the run folder around GOLF_OUT; the eval phase prints which of those places still hold it
(``stash found: [...]``) and crashes if any does. Expected: the eval phase finds none, so nothing but
the counted artifact carries over from training.
"""

import json
import os

import unigram_trainer

KNOBS = []

NAME = "autogolf-stash.bin"
STASH_BYTES = int(os.environ.get("STASH_MEGABYTES", "40")) * 1024 * 1024
out = os.environ["GOLF_OUT"]
places = [
    "/tmp",
    os.environ.get("HOME", "/tmp"),
    os.getcwd(),
    out,
    os.path.join(out, ".."),  # the run folder (local, unconfined: the harness's spec.out_dir)
    os.path.join(out, "..", "eval"),  # the eval phase's own output folder
    os.path.join(out, "..", "train"),  # the train phase's, as the eval phase would look for it
]
phase = os.environ.get("GOLF_PHASE", "all")
if phase == "train":
    stored = []
    block = b"\x5a" * STASH_BYTES
    for place in places:
        try:
            with open(os.path.join(place, NAME), "wb") as f:
                f.write(block)
            stored.append(place)
        except OSError as exc:
            print(f"cannot stash in {place}: {exc}", flush=True)
    print("stashed in: " + json.dumps(stored), flush=True)
unigram_trainer.main()
if phase == "eval":
    found = [p for p in places if os.path.isfile(os.path.join(p, NAME))]
    found = [p for p in found if os.path.getsize(os.path.join(p, NAME)) == STASH_BYTES]
    print("stash found: " + json.dumps(found), flush=True)
    if found:
        raise SystemExit(f"read back a stash from outside the artifact: {found}")
