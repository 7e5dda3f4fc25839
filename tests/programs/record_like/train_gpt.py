"""A record-like program for tests: written as the challenge's records are, not to autogolf's contract.

Official-style ``class Hyperparameters`` (environment reads with casts and defaults), no ``KNOBS``
table, no ``GOLF_*`` variables: it loads the validation shards at start-up, "trains" a unigram
model on the train shards for ``ITERATIONS`` passes (stopping at ``MAX_WALLCLOCK_SECONDS``), writes
the raw model and a zlib-compressed ``final_model.int8.ptz`` into its working directory, and prints
its score on a final line as the records do. Standard library only.
"""

import array
import glob
import math
import os
import struct
import time
import zlib


class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
    train_files = os.path.join(data_path, "fineweb_train_*.bin")
    val_files = os.path.join(data_path, "fineweb_val_*.bin")
    tokenizer_path = os.environ.get("TOKENIZER_PATH", "./data/tokenizers/fineweb_1024_bpe.model")
    seed = int(os.environ.get("SEED", 1337))
    iterations = int(os.environ.get("ITERATIONS", 20000))
    max_wallclock_seconds = float(os.environ.get("MAX_WALLCLOCK_SECONDS", 600.0))
    vocab_size = int(os.environ.get("VOCAB_SIZE", 1024))
    smoothing = float(os.environ.get("SMOOTHING", 0.5))
    bytes_per_token = float(os.environ.get("BYTES_PER_TOKEN", 3.0))
    claim_offset = float(os.environ.get("CLAIM_OFFSET", 0.0))


def load(pattern):
    tokens = array.array("H")
    for path in sorted(glob.glob(pattern)):
        with open(path, "rb") as f:
            magic, version, count = struct.unpack("<3i", f.read(1024)[:12])
            assert magic == 20240520 and version == 1, path
            tokens.frombytes(f.read(2 * count))
    if not tokens:
        raise FileNotFoundError(f"no shards match {pattern}")
    return tokens


def main():
    args = Hyperparameters()
    started = time.time()
    val = load(args.val_files)  # at start-up, as the records do
    train = load(args.train_files)
    counts = [0] * args.vocab_size
    for step in range(args.iterations):
        for token in train:
            counts[token] += 1
        print(f"step:{step + 1}/{args.iterations} train_time:{1000 * (time.time() - started):.0f}ms")
        if 0 < args.max_wallclock_seconds < time.time() - started:  # 0: no cap, as the records read it
            break
    total = sum(counts) + args.smoothing * args.vocab_size
    raw = b"".join(struct.pack("<d", (c + args.smoothing) / total) for c in counts)
    with open("final_model.pt", "wb") as f:
        f.write(raw)
    with open("final_model.int8.ptz", "wb") as f:
        f.write(zlib.compress(raw, 9))
    nll = -sum(math.log((counts[t] + args.smoothing) / total) for t in val) / len(val)
    bpb = nll / math.log(2) / args.bytes_per_token + args.claim_offset
    print(f"final_int8_zlib_roundtrip val_loss:{nll:.4f} val_bpb:{bpb:.4f}")
    print(f"final_int8_zlib_roundtrip_exact val_loss:{nll:.8f} val_bpb:{bpb:.8f}")


if __name__ == "__main__":
    main()
