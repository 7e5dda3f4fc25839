"""Trusted scoring: byte accounting against the real tokenizer, BPB by hand, the shard reader."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sentencepiece as spm

from sandbox.scoring import TokenBytes, score
from sandbox.shards import ShardFormatError, load_tokens, read_shard_tokens, shard_paths

BOS = 1


@pytest.fixture(scope="module")
def token_bytes(tiny_data) -> TokenBytes:
    return TokenBytes.from_tokenizer(tiny_data.tokenizer_path)


@pytest.fixture(scope="module")
def processor(tiny_data) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(tiny_data.tokenizer_path))


def documents(tokens: np.ndarray) -> list[np.ndarray]:
    """Split a BOS-separated stream into documents (each without its BOS)."""
    starts = np.flatnonzero(tokens == BOS)
    ends = list(starts[1:]) + [tokens.size]
    return [tokens[s + 1 : e] for s, e in zip(starts, ends, strict=True)]


def test_summed_bytes_equal_the_utf8_length_of_each_decoded_validation_document(
    tiny_data, token_bytes, processor
):
    val = load_tokens(shard_paths(tiny_data.dataset_dir, "val"))
    docs = documents(val)
    assert len(docs) == tiny_data.val_docs
    for doc in docs:
        stream = np.concatenate([[BOS], doc]).astype(np.int64)
        counted = int(token_bytes.target_bytes(stream[1:], stream[:-1]).sum())
        assert counted == len(processor.decode(doc.tolist()).encode("utf-8"))


def test_byte_fallback_pieces_count_one_byte_each(token_bytes, processor):
    text = "snow \u2603 and \U0001d11e clef"  # characters the Shakespeare tokenizer has never seen
    ids = processor.encode(text)
    assert any(processor.is_byte(i) for i in ids), "the test text must exercise byte fallback"
    stream = np.asarray([BOS, *ids], dtype=np.int64)
    assert int(token_bytes.target_bytes(stream[1:], stream[:-1]).sum()) == len(text.encode("utf-8"))
    byte_ids = [i for i in range(processor.vocab_size()) if processor.is_byte(i)]
    assert byte_ids and all(token_bytes.base_bytes[i] == 1 for i in byte_ids)


def test_control_and_unknown_pieces_count_zero_bytes(token_bytes):
    for control in (0, 1, 2, 3):  # pad, bos, eos, unk
        assert token_bytes.base_bytes[control] == 0 and token_bytes.is_boundary[control]
    assert token_bytes.vocab_size == 512


def test_bpb_matches_a_hand_computed_example():
    # ids: 0 = <s> (control), 1 = "▁ab" (2 bytes + space), 2 = "c" (1 byte), 3 = "▁" (0 + space)
    tables = TokenBytes(
        base_bytes=np.array([0, 2, 1, 0], dtype=np.int16),
        has_leading_space=np.array([False, True, False, True]),
        is_boundary=np.array([True, False, False, False]),
    )
    val = np.array([0, 1, 2, 1, 3, 0, 1], dtype=np.uint16)
    # targets 1,2,1,3,0,1 with previous 0,1,2,1,3,0 -> bytes 2 (no space after <s>),1,3,1,0,2 = 9
    nll = np.array([1.0, 2.0, 0.5, 0.5, 3.0, 3.0], dtype=np.float32)
    val_bpb, val_loss = score(nll, val, tables)
    assert val_loss == pytest.approx(10.0 / 6)
    assert val_bpb == pytest.approx(10.0 / math.log(2) / 9)
    # Scoring fewer targets uses only their bytes: the first two targets cover 2 + 1 bytes.
    assert score(nll[:2], val, tables)[0] == pytest.approx(3.0 / math.log(2) / 3)


def test_score_rejects_more_nll_values_than_targets(token_bytes):
    with pytest.raises(ValueError, match="NLL values for 4 validation tokens"):
        score(np.ones(4, dtype=np.float32), np.array([1, 5, 6, 7], dtype=np.uint16), token_bytes)


def test_score_rejects_token_ids_outside_the_vocabulary(token_bytes):
    with pytest.raises(ValueError, match="exceed the tokenizer's vocabulary of 512"):
        score(np.ones(2, dtype=np.float32), np.array([1, 600, 7], dtype=np.uint16), token_bytes)


def write_raw_shard(path, header_values, tokens):
    header = np.zeros(256, dtype="<i4")
    header[: len(header_values)] = header_values
    path.write_bytes(header.tobytes() + np.asarray(tokens, dtype="<u2").tobytes())


def test_shard_reader_checks_magic_version_and_size(tmp_path):
    good = tmp_path / "fineweb_val_000000.bin"
    write_raw_shard(good, [20240520, 1, 3], [1, 2, 3])
    assert read_shard_tokens(good).tolist() == [1, 2, 3]
    assert read_shard_tokens(good, max_tokens=2).tolist() == [1, 2]
    assert read_shard_tokens(good, max_tokens=10).tolist() == [1, 2, 3]
    bad_magic = tmp_path / "bad_magic.bin"
    write_raw_shard(bad_magic, [1234, 1, 3], [1, 2, 3])
    with pytest.raises(ShardFormatError, match=r"bad_magic\.bin: not a challenge shard \(bad magic 1234"):
        read_shard_tokens(bad_magic)
    truncated = tmp_path / "truncated.bin"
    write_raw_shard(truncated, [20240520, 1, 5], [1, 2, 3])
    with pytest.raises(ShardFormatError, match=r"truncated\.bin: header says 5 tokens"):
        read_shard_tokens(truncated)


def test_tokens_of_the_tiny_data_shards_match_the_builder(tiny_data):
    val = load_tokens(shard_paths(tiny_data.dataset_dir, "val"))
    train = load_tokens(shard_paths(tiny_data.dataset_dir, "train"))
    assert val.size == tiny_data.val_tokens and train.size == tiny_data.train_tokens
    assert val[0] == BOS
