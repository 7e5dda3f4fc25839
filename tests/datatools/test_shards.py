"""The challenge shard format: round trips, and every malformed file rejected with its name."""

from __future__ import annotations

import numpy as np
import pytest

import sandbox.shards
from autogolf.errors import GolfError
from datatools.shards import (
    DataError,
    ShardError,
    ShardWriter,
    load_split,
    read_header,
    read_shard,
    shard_paths,
    write_shard,
)
from sandbox.shards import SHARD_HEADER_BYTES, SHARD_MAGIC


def _header(path):
    return np.fromfile(path, dtype="<i4", count=256)


def test_round_trip_keeps_every_token_including_the_uint16_extremes(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 65536, size=5000).astype(np.uint16)
    tokens[:2] = [0, 65535]
    path = tmp_path / "fineweb_val_000000.bin"
    write_shard(path, tokens)
    assert read_header(path) == 5000
    assert path.stat().st_size == SHARD_HEADER_BYTES + 2 * 5000
    header = _header(path)
    assert (int(header[0]), int(header[1]), int(header[2])) == (SHARD_MAGIC, 1, 5000)
    assert not header[3:].any()
    np.testing.assert_array_equal(read_shard(path), tokens)


def test_empty_shard_round_trips(tmp_path):
    path = tmp_path / "s.bin"
    write_shard(path, np.array([], dtype=np.uint16))
    assert read_header(path) == 0
    assert read_shard(path).size == 0


def _corrupt(tmp_path, index, value):
    path = tmp_path / "fineweb_train_000003.bin"
    write_shard(path, np.arange(10, dtype=np.uint16))
    header = _header(path)
    header[index] = value
    with path.open("r+b") as f:
        f.write(header.tobytes())
    return path


def test_bad_magic_is_rejected_naming_the_file(tmp_path):
    path = _corrupt(tmp_path, 0, 12345)
    with pytest.raises(ShardError, match=r"fineweb_train_000003\.bin.*bad magic 12345"):
        read_header(path)


def test_unknown_version_is_rejected_naming_the_file(tmp_path):
    path = _corrupt(tmp_path, 1, 7)
    with pytest.raises(ShardError, match=r"fineweb_train_000003\.bin.*version 7"):
        read_header(path)


@pytest.mark.parametrize("extra_bytes", [-2, 2])
def test_size_disagreeing_with_the_header_is_rejected(tmp_path, extra_bytes):
    path = tmp_path / "fineweb_val_000000.bin"
    write_shard(path, np.arange(10, dtype=np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[:extra_bytes] if extra_bytes < 0 else data + b"\0" * extra_bytes)
    with pytest.raises(ShardError, match=r"fineweb_val_000000\.bin.*10 tokens.*1044 bytes"):
        read_header(path)


def test_file_shorter_than_the_header_is_rejected(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(ShardError, match=r"short\.bin.*100 bytes, shorter than the 1024-byte header"):
        read_header(path)


def test_missing_file_is_a_shard_error_naming_it(tmp_path):
    with pytest.raises(ShardError, match=r"nothere\.bin.*cannot read"):
        read_header(tmp_path / "nothere.bin")


def test_token_ids_beyond_uint16_are_refused(tmp_path):
    with pytest.raises(ShardError, match="uint16"):
        write_shard(tmp_path / "s.bin", np.array([1, 65536]))
    assert not (tmp_path / "s.bin").exists()


def test_shard_errors_are_data_errors_and_value_errors():
    assert issubclass(ShardError, DataError)
    assert issubclass(DataError, ValueError)
    assert issubclass(DataError, GolfError)  # the command line reports it as a message, not a traceback


def test_the_data_tools_check_shards_with_the_harness_reader(tmp_path, monkeypatch):
    # One implementation of the format: a stricter harness check reaches the data tools too.
    path = tmp_path / "fineweb_val_000000.bin"
    write_shard(path, np.arange(4, dtype=np.uint16))
    monkeypatch.setattr(sandbox.shards, "SHARD_VERSION", 2)
    with pytest.raises(ShardError, match=r"fineweb_val_000000\.bin.*unsupported version 1, expected 2"):
        read_header(path)
    with pytest.raises(ShardError, match="unsupported version 1"):
        load_split(tmp_path, "val")


def test_writer_cuts_the_stream_into_numbered_shards_of_at_most_shard_tokens(tmp_path):
    rng = np.random.default_rng(1)
    pieces = [rng.integers(0, 1024, size=n) for n in (3, 40, 0, 17, 25)]
    writer = ShardWriter(tmp_path, "train", shard_tokens=30)
    for piece in pieces:
        writer.add(piece)
    paths = writer.close()
    assert [p.name for p in paths] == [f"fineweb_train_00000{i}.bin" for i in range(3)]
    assert [read_header(p) for p in paths] == [30, 30, 25]
    assert writer.tokens_written == 85
    assert shard_paths(tmp_path, "train") == paths
    np.testing.assert_array_equal(load_split(tmp_path, "train"), np.concatenate(pieces))


def test_writer_with_nothing_added_writes_no_shard(tmp_path):
    assert ShardWriter(tmp_path, "val").close() == []
    with pytest.raises(ShardError, match=r"no fineweb_val_\*\.bin shards"):
        load_split(tmp_path, "val")
