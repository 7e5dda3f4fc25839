"""The data tools' side of the challenge shard format: :class:`ShardWriter`, which streams a split into
numbered shards as the official export cuts them.

The format itself (header checks, reading, atomic writing, file names) has one implementation,
:mod:`sandbox.shards`, which the harness scores with; it is re-exported here under the names the data
tools use (``read_shard``, ``ShardError``), so a shard the tools build is checked by the very code that
will read it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autogolf.errors import DataError
from sandbox.shards import MAX_TOKEN_ID, load_split, read_header, shard_name, shard_paths, write_shard
from sandbox.shards import ShardFormatError as ShardError
from sandbox.shards import read_shard_tokens as read_shard

__all__ = [
    "MAX_TOKEN_ID",
    "DataError",
    "ShardError",
    "ShardWriter",
    "load_split",
    "read_header",
    "read_shard",
    "shard_name",
    "shard_paths",
    "write_shard",
]


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
