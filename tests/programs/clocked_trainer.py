"""A fake trainer with the official script's step and wall-clock caps, standard library only.

It honours the run contract (docs/contract.md) like ``unigram_trainer.py``, but trains for
``ITERATIONS`` steps, each counting the next slice of the train tokens and sleeping
``SLEEP_SECONDS``, and stops early once its own timer reaches ``MAX_WALLCLOCK_SECONDS`` (0: no cap),
as ``baseline/train_gpt.py`` does. Its defaults cut it short (six steps planned, a 0.25 s cap at
0.1 s a step): a harness that bounds training by steps must turn that cap off.
"""

from __future__ import annotations

import array
import glob
import json
import math
import os
import struct
import sys
import time
import zlib


def Knob(name, type, default, **options):  # noqa: N802 - the knob table's grammar (sandbox/knobs.py)
    return (name, type, default, options)


KNOBS = [
    Knob("ITERATIONS", int, 6),
    Knob("MAX_WALLCLOCK_SECONDS", float, 0.25),
    Knob("SLEEP_SECONDS", float, 0.1, low=0.0, high=1.0),
    Knob("SMOOTHING", float, 0.5, low=0.01, high=10.0, log=True),
    Knob("VOCAB_SIZE", int, 512),
    Knob("EVAL_SEQ_LEN", int, 64, low=1, high=1024),
    Knob("SEED", int, 1337),
    Knob("DATA_PATH", str, "./data/datasets/tiny_sp512"),
    Knob("TOKENIZER_PATH", str, "./data/tokenizers/tiny_512_bpe.model"),
]
LITTLE = sys.byteorder == "little"
OUT = os.environ.get("GOLF_OUT", os.getcwd())
ARTIFACT = os.path.join(os.environ.get("GOLF_ARTIFACT_DIR", os.path.join(OUT, "artifact")), "counts.zlib")


def settings() -> dict:
    return {name: kind(os.environ.get(name, default)) for name, kind, default, _ in KNOBS}


def tokens_of(data_path: str, split: str) -> array.array:
    tokens = array.array("H")
    for path in sorted(glob.glob(os.path.join(data_path, f"fineweb_{split}_*.bin"))):
        with open(path, "rb") as f:
            count = struct.unpack("<3i", f.read(1024)[:12])[2]
            tokens.frombytes(f.read(2 * count))
    if not LITTLE:
        tokens.byteswap()
    return tokens


def log_probs(counts: list[int], smoothing: float) -> list[float]:
    total = sum(counts) + smoothing * len(counts)
    return [math.log((c + smoothing) / total) for c in counts]


def write_f32(path: str, values) -> None:
    data = array.array("f", values)
    if not LITTLE:
        data.byteswap()
    with open(path, "wb") as f:
        f.write(data.tobytes())


def write_json(path: str, data: dict) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)


def train(cfg: dict) -> dict:
    started = time.perf_counter()
    tokens = tokens_of(cfg["DATA_PATH"], "train")
    counts = [0] * cfg["VOCAB_SIZE"]
    chunk = max(1, len(tokens) // cfg["ITERATIONS"])
    step, elapsed = 0, 0.0
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "curve.jsonl"), "w") as curve:
        while step < cfg["ITERATIONS"]:
            for token in tokens[step * chunk : (step + 1) * chunk]:
                counts[token] += 1
            time.sleep(cfg["SLEEP_SECONDS"])
            step += 1
            elapsed = time.perf_counter() - started
            logp = log_probs(counts, cfg["SMOOTHING"])
            loss = -sum(c * logp[t] for t, c in enumerate(counts) if c) / max(1, sum(counts))
            curve.write(json.dumps({"step": step, "train_loss": loss, "elapsed_ms": 1000 * elapsed}) + "\n")
            curve.flush()
            if 0 < cfg["MAX_WALLCLOCK_SECONDS"] <= elapsed:
                print(f"stopping at step {step}: wall-clock cap", flush=True)
                break
    os.makedirs(os.path.dirname(ARTIFACT), exist_ok=True)
    with open(ARTIFACT, "wb") as f:
        f.write(zlib.compress(array.array("I", counts).tobytes(), 9))
    report = {"train_seconds": elapsed, "steps": step}
    write_json(os.path.join(OUT, "result.json"), {"phase": "train", **report})
    return report


def evaluate(cfg: dict, trained: dict) -> None:
    started = time.perf_counter()
    with open(ARTIFACT, "rb") as f:
        logp = log_probs(list(array.array("I", zlib.decompress(f.read()))), cfg["SMOOTHING"])
    val = tokens_of(cfg["DATA_PATH"], "val")
    n = ((len(val) - 1) // cfg["EVAL_SEQ_LEN"]) * cfg["EVAL_SEQ_LEN"]
    nll = [-logp[val[i + 1]] for i in range(n)]
    write_f32(os.path.join(OUT, "val_nll.f32"), nll)
    if os.environ.get("GOLF_CHECK_POSITIONS"):
        positions = array.array("q")
        with open(os.environ["GOLF_CHECK_POSITIONS"], "rb") as f:
            positions.frombytes(f.read())
        write_f32(os.path.join(OUT, "check_rows.f32"), [x for _ in positions for x in logp])
    val_loss = sum(nll) / max(1, n)
    report = {
        "val_loss": val_loss,
        "val_bpb": val_loss / math.log(2) / 4.0,  # a rough guess; the harness computes the real one
        "bytes_code": os.path.getsize(os.path.abspath(sys.argv[0])),
        "bytes_model": os.path.getsize(ARTIFACT),
        "train_seconds": trained.get("train_seconds"),
        "steps": trained.get("steps"),
        "eval_seconds": time.perf_counter() - started,
        "eval_seq_len": cfg["EVAL_SEQ_LEN"],
        "vocab_size": cfg["VOCAB_SIZE"],
    }
    write_json(os.path.join(OUT, "result.json"), report)


def main() -> None:
    cfg = settings()
    phase = os.environ.get("GOLF_PHASE", "all")
    trained = train(cfg) if phase in ("train", "all") else {}
    if phase == "eval":  # the train phase's report, when it ran in this folder
        path = os.path.join(OUT, "result.json")
        if os.path.isfile(path):
            with open(path) as f:
                trained = json.load(f)
    if phase in ("eval", "all"):
        evaluate(cfg, trained)


if __name__ == "__main__":
    main()
