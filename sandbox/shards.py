"""Challenge-format shards (CHALLENGE.md, "Data format"): the one reader and writer of the format.

A shard is a 256 x int32 little-endian header, then uint16 tokens. Header ``[0] = 20240520`` (magic),
``[1] = 1`` (version), ``[2] = num_tokens``; the file is exactly ``1024 + 2 * num_tokens`` bytes. The
shards of a split are one token stream cut into pieces, so readers concatenate them in file order.

The harness reads the validation split with this module to score, and writes shards of its own (the
smoke run's cut validation split, the integrity probe's changed stream); the data tools
(``datatools.shards``) build datasets with it. It lives in the sandbox because the harness may not
import the data tools. ``train_gpt.py`` keeps its own reader: it is one self-contained file, as the
challenge counts it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autogolf.errors import DataError

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SHARD_HEADER_INTS = 256
SHARD_HEADER_BYTES = SHARD_HEADER_INTS * 4
MAX_TOKEN_ID = 65535  # tokens are stored as uint16


class ShardFormatError(DataError):
    """A shard file is not in the challenge format; the message names the file and the fault."""


def read_header(path: Path) -> int:
    """Validate a shard's header and size; return its token count.

    Raises :class:`ShardFormatError` naming the file for one that cannot be read, is shorter than the
    header, has the wrong magic or version, or whose size disagrees with the header's token count.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            header = np.frombuffer(f.read(SHARD_HEADER_BYTES), dtype="<i4")
    except OSError as exc:
        raise ShardFormatError(f"{path}: cannot read shard ({exc.strerror})") from exc
    if header.size != SHARD_HEADER_INTS:
        raise ShardFormatError(
            f"{path}: not a challenge shard (the file is {size} bytes, shorter than the "
            f"{SHARD_HEADER_BYTES}-byte header)"
        )
    if int(header[0]) != SHARD_MAGIC:
        raise ShardFormatError(
            f"{path}: not a challenge shard (bad magic {int(header[0])}, expected {SHARD_MAGIC})"
        )
    if int(header[1]) != SHARD_VERSION:
        raise ShardFormatError(
            f"{path}: not a challenge shard (unsupported version {int(header[1])}, expected {SHARD_VERSION})"
        )
    num_tokens = int(header[2])
    expected = SHARD_HEADER_BYTES + 2 * num_tokens
    if num_tokens < 0 or size != expected:
        raise ShardFormatError(
            f"{path}: header says {num_tokens} tokens, so the file should be {expected} bytes, but it is "
            f"{size}; the shard is truncated or damaged"
        )
    return num_tokens


def read_shard_tokens(path: Path, max_tokens: int | None = None) -> np.ndarray:
    """One shard's tokens as uint16, after :func:`read_header` validated it (its errors, same text).

    With ``max_tokens``, only that many tokens from the start of the shard are read.
    """
    num_tokens = read_header(path)
    count = num_tokens if max_tokens is None else min(max_tokens, num_tokens)
    return np.fromfile(path, dtype="<u2", count=count, offset=SHARD_HEADER_BYTES)


def shard_name(split: str, index: int) -> str:
    """The official file name of shard ``index`` of a split: ``fineweb_<split>_NNNNNN.bin``."""
    return f"fineweb_{split}_{index:06d}.bin"


SIDECAR_SPLIT = "val_bytes"  # fineweb_val_bytes_NNNNNN.bin: per-token byte counts beside the val shards


def shard_paths(dataset_dir: Path, split: str) -> list[Path]:
    """The dataset's token shards of one split (``train`` or ``val``), in order. A byte sidecar
    (``fineweb_val_bytes_*.bin``, which the same glob would match) is not a token shard."""
    return sorted(p for p in Path(dataset_dir).glob(f"fineweb_{split}_*.bin") if "_bytes_" not in p.name)


def sidecar_paths(dataset_dir: Path) -> list[Path]:
    """The dataset's byte sidecar shards, in order (none for most datasets)."""
    return sorted(Path(dataset_dir).glob(f"fineweb_{SIDECAR_SPLIT}_*.bin"))


def load_tokens(paths: list[Path]) -> np.ndarray:
    """Concatenate shards in order (the contract's ``val``); :class:`ShardFormatError` for none."""
    if not paths:
        raise ShardFormatError("no shards given")
    return np.concatenate([read_shard_tokens(p) for p in paths])


def load_split(dataset_dir: Path, split: str) -> np.ndarray:
    """All tokens of one split, concatenated in shard order; :class:`ShardFormatError` naming the
    folder when it holds no shard of that split."""
    paths = shard_paths(dataset_dir, split)
    if not paths:
        raise ShardFormatError(f"{dataset_dir}: no fineweb_{split}_*.bin shards")
    return load_tokens(paths)


def write_shard(path: Path, tokens: np.ndarray) -> None:
    """Write ``tokens`` as one shard with a valid header, atomically (a crash never leaves half a shard).

    Raises :class:`ShardFormatError` for token ids outside uint16, before anything is written.
    """
    tokens = np.asarray(tokens)
    if (  # a uint16 array fits by its type: no pass over (up to 10^8) tokens to check it
        tokens.dtype != np.uint16
        and tokens.size
        and (int(tokens.min()) < 0 or int(tokens.max()) > MAX_TOKEN_ID)
    ):
        raise ShardFormatError(f"{path}: token ids must fit in uint16 (0..{MAX_TOKEN_ID})")
    header = np.zeros(SHARD_HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, tokens.size
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2", copy=False).tobytes())
    tmp.replace(path)
