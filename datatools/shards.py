"""The challenge's shard format: a 256 x int32 little-endian header, then uint16 tokens.

Header ``[0] = 20240520`` (magic), ``[1] = 1`` (version), ``[2] = num_tokens``; the file size must be
exactly ``1024 + 2 * num_tokens``. ``train_gpt.py`` carries its own reader (it is one self-contained
file, as the challenge counts it); this module is the harness's and the data tools' copy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAX_TOKEN_ID = 65535  # tokens are stored as uint16


class DataError(ValueError):
    """Bad data input (files, corpus, download, shard); the message names the input and the fix."""


class ShardError(DataError):
    """A shard file is not in the challenge format; the message names the file and the fault."""


def read_header(path: Path) -> int:
    """Validate a shard's header and size; return its token count."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            header = np.frombuffer(f.read(HEADER_BYTES), dtype="<i4")
    except OSError as exc:
        raise ShardError(f"{path}: cannot read shard ({exc.strerror})") from exc
    if header.size != HEADER_INTS:
        raise ShardError(f"{path}: file is {size} bytes, shorter than the {HEADER_BYTES}-byte header")
    if int(header[0]) != SHARD_MAGIC:
        raise ShardError(
            f"{path}: bad magic {int(header[0])} (expected {SHARD_MAGIC}); not a challenge shard"
        )
    if int(header[1]) != SHARD_VERSION:
        raise ShardError(f"{path}: unsupported version {int(header[1])} (expected {SHARD_VERSION})")
    num_tokens = int(header[2])
    expected = HEADER_BYTES + 2 * num_tokens
    if num_tokens < 0 or size != expected:
        raise ShardError(
            f"{path}: header says {num_tokens} tokens, so the file should be {expected} bytes, but it is {size}"
        )
    return num_tokens


def read_shard(path: Path) -> np.ndarray:
    """Return the shard's tokens as a uint16 array (validated header and size)."""
    num_tokens = read_header(path)
    return np.fromfile(path, dtype="<u2", count=num_tokens, offset=HEADER_BYTES)


def write_shard(path: Path, tokens: np.ndarray) -> None:
    """Write tokens in the challenge format, atomically (a crash never leaves a half shard)."""
    tokens = np.asarray(tokens)
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) > MAX_TOKEN_ID):
        raise ShardError(f"{path}: token ids must fit in uint16 (0..{MAX_TOKEN_ID})")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, tokens.size
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2", copy=False).tobytes())
    tmp.replace(path)


def shard_name(split: str, index: int) -> str:
    """The official file name of shard ``index`` of a split: ``fineweb_<split>_NNNNNN.bin``."""
    return f"fineweb_{split}_{index:06d}.bin"


class ShardWriter:
    """Streams one split's tokens into numbered shards of at most ``shard_tokens`` tokens each.

    Documents may straddle a shard boundary, as in the official export: the shards of a split are one
    token stream cut into pieces, so readers concatenate them in order.
    """

    def __init__(self, dataset_dir: Path, split: str, shard_tokens: int = 10**8) -> None:
        if shard_tokens < 1:
            raise ValueError(f"shard_tokens must be at least 1, got {shard_tokens}")
        self.dataset_dir = Path(dataset_dir)
        self.split = split
        self.paths: list[Path] = []
        self.tokens_written = 0
        self._buffer = np.empty(shard_tokens, dtype=np.uint16)
        self._fill = 0

    def add(self, tokens: np.ndarray) -> None:
        """Append tokens (ids 0..65535) to the stream, writing every shard that fills up."""
        tokens = np.asarray(tokens)
        if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) > MAX_TOKEN_ID):
            raise ShardError(f"{self.split} tokens must fit in uint16 (0..{MAX_TOKEN_ID})")
        start = 0
        while start < tokens.size:
            take = min(tokens.size - start, self._buffer.size - self._fill)
            self._buffer[self._fill : self._fill + take] = tokens[start : start + take]
            self._fill += take
            start += take
            if self._fill == self._buffer.size:
                self._flush()

    def close(self) -> list[Path]:
        """Write the last, partly filled shard; return every shard written, in order."""
        self._flush()
        return self.paths

    def _flush(self) -> None:
        if self._fill == 0:
            return
        path = self.dataset_dir / shard_name(self.split, len(self.paths))
        write_shard(path, self._buffer[: self._fill])
        self.paths.append(path)
        self.tokens_written += self._fill
        self._fill = 0


def shard_paths(dataset_dir: Path, split: str) -> list[Path]:
    """The dataset's shards of one split (``train`` or ``val``), in order."""
    return sorted(Path(dataset_dir).glob(f"fineweb_{split}_*.bin"))


def load_split(dataset_dir: Path, split: str) -> np.ndarray:
    """All tokens of one split, concatenated in shard order."""
    paths = shard_paths(dataset_dir, split)
    if not paths:
        raise ShardError(f"{dataset_dir}: no fineweb_{split}_*.bin shards")
    return np.concatenate([read_shard(p) for p in paths])
