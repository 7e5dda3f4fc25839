"""A fake trainer that honours the run contract (docs/contract.md) in well under a second.

Standard library only, so it runs in any image that has python3. ``train`` counts token frequencies
in the train shards and writes them (zlib) as the artifact; ``eval`` scores every validation target
with the add-k smoothed unigram distribution and writes ``val_nll.f32``, the requested check rows and
``result.json``. Hostile test programs import this module and break one thing at a time; those that
score differently (look-ahead, test-time training) give :func:`evaluate` their own ``scorer``: a
function from the validation tokens and the artifact's log-probabilities to a list of per-position
log-probability rows (one list per position, or one shared list) that the NLL and the check rows are
both read from, as a real trainer reads both from one forward pass.
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
    Knob("SMOOTHING", float, 0.5, low=0.01, high=10.0, log=True),
    Knob("SLEEP_SECONDS", float, 0.0, low=0.0, high=2.0),
    Knob("VOCAB_SIZE", int, 512),
    Knob("EVAL_SEQ_LEN", int, 64, low=1, high=1024),
    Knob("EVAL_SLEEP_SECONDS", float, 0.0, low=0.0, high=10.0),
    Knob("SEED", int, 1337),
    Knob("DATA_PATH", str, "./data/datasets/tiny_sp512"),
    Knob("TOKENIZER_PATH", str, "./data/tokenizers/tiny_512_bpe.model"),
]

ARTIFACT_NAME = "unigram_counts.zlib"
LITTLE = sys.byteorder == "little"


def settings() -> dict:
    values = {}
    for name, type_, default, _ in KNOBS:
        text = os.environ.get(name)
        values[name] = default if text is None else type_(text)
    return values


def read_shard(path: str) -> array.array:
    with open(path, "rb") as f:
        header = f.read(1024)
        magic, version, count = struct.unpack("<3i", header[:12])
        if magic != 20240520 or version != 1:
            raise ValueError(f"{path}: not a challenge shard")
        tokens = array.array("H")
        tokens.frombytes(f.read(2 * count))
    if not LITTLE:
        tokens.byteswap()
    return tokens


def load_split(data_path: str, split: str) -> array.array:
    paths = sorted(glob.glob(os.path.join(data_path, f"fineweb_{split}_*.bin")))
    if not paths:
        raise FileNotFoundError(f"no fineweb_{split}_*.bin shards under {data_path}")
    tokens = array.array("H")
    for path in paths:
        tokens.extend(read_shard(path))
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


def out_dir() -> str:
    return os.environ.get("GOLF_OUT", os.getcwd())


def artifact_dir() -> str:
    return os.environ.get("GOLF_ARTIFACT_DIR", os.path.join(out_dir(), "artifact"))


def train(cfg: dict) -> dict:
    started = time.perf_counter()
    tokens = load_split(cfg["DATA_PATH"], "train")
    vocab = cfg["VOCAB_SIZE"]
    counts = [0] * vocab
    os.makedirs(out_dir(), exist_ok=True)
    steps = 4
    chunk = max(1, len(tokens) // steps)
    with open(os.path.join(out_dir(), "curve.jsonl"), "w") as curve:
        for step in range(steps):
            part = tokens[step * chunk : (step + 1) * chunk] if step < steps - 1 else tokens[step * chunk :]
            for token in part:
                counts[token] += 1
            # In-sample loss of the counts so far: what a real trainer's running train loss is.
            logp = log_probs(counts, cfg["SMOOTHING"])
            seen = sum(counts)
            loss = -sum(c * logp[t] for t, c in enumerate(counts) if c) / max(1, seen)
            elapsed_ms = 1000 * (time.perf_counter() - started)
            curve.write(json.dumps({"step": step + 1, "train_loss": loss, "elapsed_ms": elapsed_ms}) + "\n")
            curve.flush()
            time.sleep(cfg["SLEEP_SECONDS"] / steps)
    os.makedirs(artifact_dir(), exist_ok=True)
    blob = zlib.compress(array.array("I", counts).tobytes(), 9)
    with open(os.path.join(artifact_dir(), ARTIFACT_NAME), "wb") as f:
        f.write(blob)
    report = {"train_seconds": time.perf_counter() - started, "steps": steps, "bytes_model": len(blob)}
    write_json(os.path.join(out_dir(), "result.json"), report)
    print(f"train: {len(tokens)} tokens, {steps} steps, {len(blob)} artifact bytes", flush=True)
    return report


def unigram_scorer(val, logp: list[float], n: int):
    """The honest model: one distribution for every position."""
    return lambda position: logp


def evaluate(cfg: dict, train_report: dict | None, scorer=unigram_scorer) -> dict:
    """Score targets val[1..n] with ``scorer(val, logp, n)`` (a function position -> log-prob row)."""
    started = time.perf_counter()
    with open(os.path.join(artifact_dir(), ARTIFACT_NAME), "rb") as f:
        counts = list(array.array("I", zlib.decompress(f.read())))
    vocab = cfg["VOCAB_SIZE"]
    if len(counts) != vocab:
        raise ValueError(f"artifact has {len(counts)} counts but VOCAB_SIZE is {vocab}")
    logp = log_probs(counts, cfg["SMOOTHING"])
    val = load_split(cfg["DATA_PATH"], "val")
    seq_len = cfg["EVAL_SEQ_LEN"]
    n = ((len(val) - 1) // seq_len) * seq_len
    row_of = scorer(val, logp, n)
    nll = [-row_of(i)[val[i + 1]] for i in range(n)]
    write_f32(os.path.join(out_dir(), "val_nll.f32"), nll)
    positions = check_positions()
    if positions is not None:
        write_f32(os.path.join(out_dir(), "check_rows.f32"), [x for p in positions for x in row_of(p)])
    time.sleep(cfg["EVAL_SLEEP_SECONDS"])
    val_loss = sum(nll) / max(1, n)
    script = os.path.abspath(sys.argv[0])
    report = {
        "val_loss": val_loss,
        "val_bpb": val_loss / math.log(2) / 4.0,  # a rough guess; the harness computes the real one
        "bytes_code": os.path.getsize(script),
        "bytes_model": os.path.getsize(os.path.join(artifact_dir(), ARTIFACT_NAME)),
        "train_seconds": (train_report or {}).get("train_seconds"),
        "steps": (train_report or {}).get("steps"),
        "eval_seconds": time.perf_counter() - started,
        "eval_seq_len": seq_len,
        "vocab_size": vocab,
    }
    write_json(os.path.join(out_dir(), "result.json"), report)
    print(f"eval: val_loss {val_loss:.4f} over {n} targets", flush=True)
    return report


def check_positions() -> list[int] | None:
    """The positions the harness asked rows for (GOLF_CHECK_POSITIONS), in file order, or None."""
    path = os.environ.get("GOLF_CHECK_POSITIONS")
    if not path:
        return None
    positions = array.array("q")
    with open(path, "rb") as f:
        positions.frombytes(f.read())
    if not LITTLE:
        positions.byteswap()
    return list(positions)


def normalized(logits: list[float]) -> list[float]:
    """Log-softmax of a list, in plain Python."""
    peak = max(logits)
    total = peak + math.log(sum(math.exp(x - peak) for x in logits))
    return [x - total for x in logits]


def write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def main(scorer=unigram_scorer) -> None:
    cfg = settings()
    phase = os.environ.get("GOLF_PHASE", "all")
    train_report = train(cfg) if phase in ("train", "all") else None
    if phase in ("eval", "all"):
        evaluate(cfg, train_report, scorer)


if __name__ == "__main__":
    main()
