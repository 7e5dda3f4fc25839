"""Hostile: writes next to its own script and into the data folder. Expected in a sandbox: refused."""

import os
from pathlib import Path

import unigram_trainer

KNOBS = []

for folder in (Path(__file__).resolve().parent, Path(os.environ["DATA_PATH"])):
    (folder / "pwned.txt").write_text("written from inside the sandbox")
unigram_trainer.main()
