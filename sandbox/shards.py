"""Challenge-format shards as the harness reads and writes them (CHALLENGE.md, "Data format").

A deliberate small duplicate of ``datatools/shards.py``: the sandbox must not import the program's
package. The harness writes shards of its own too: the smoke run's cut validation split and the
integrity probe's changed stream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SHARD_HEADER_INTS = 256
SHARD_HEADER_BYTES = SHARD_HEADER_INTS * 4


class ShardFormatError(ValueError):
    """A data shard is not in the challenge format; the message names the file and the fault."""


def shard_paths(dataset_dir: Path, split: str) -> list[Path]:
    """The dataset's ``fineweb_{split}_*.bin`` shards, in order."""
    return sorted(Path(dataset_dir).glob(f"fineweb_{split}_*.bin"))


def read_shard_tokens(path: Path, max_tokens: int | None = None) -> np.ndarray:
    """One shard's tokens as uint16, after checking magic, version and that the size matches the header.

    With ``max_tokens``, only that many tokens from the start of the shard are read.
    """
    path = Path(path)
    size = path.stat().st_size
    header = np.fromfile(path, dtype="<i4", count=SHARD_HEADER_INTS)
    if header.size != SHARD_HEADER_INTS or int(header[0]) != SHARD_MAGIC or int(header[1]) != SHARD_VERSION:
        raise ShardFormatError(f"{path}: not a challenge shard (bad header); rebuild the dataset")
    num_tokens = int(header[2])
    if size != SHARD_HEADER_BYTES + 2 * num_tokens:
        raise ShardFormatError(
            f"{path}: header says {num_tokens} tokens but the file is {size} bytes; the shard is truncated"
        )
    count = num_tokens if max_tokens is None else min(max_tokens, num_tokens)
    return np.fromfile(path, dtype="<u2", count=count, offset=SHARD_HEADER_BYTES)


def load_tokens(paths: list[Path]) -> np.ndarray:
    """Concatenate shards in order (the contract's ``val``)."""
    if not paths:
        raise ShardFormatError("no shards given")
    return np.concatenate([read_shard_tokens(p) for p in paths])


def write_shard(path: Path, tokens: np.ndarray) -> None:
    """Write ``tokens`` as one shard with a valid header (uint16 tokens, little-endian)."""
    header = np.zeros(SHARD_HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, tokens.size
    with Path(path).open("wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2", copy=False).tobytes())
