"""Scoring with a dataset's byte sidecar (``fineweb_val_bytes_*.bin``): one byte count per validation
position, as the CaseOps records ship for a transformed text. Checked against the validation shards
and the tokenizer's own count before a single run uses it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from sandbox import HarnessError, RunStatus, run
from sandbox.scoring import TokenBytes, score
from sandbox.shards import read_shard_tokens, shard_paths, sidecar_paths, write_shard
from sandbox.spec import DataPaths


@pytest.fixture
def backend_name() -> str:
    return "local"


def with_sidecar(tiny_data, folder, scale: float = 1.0, drop_last: bool = False):
    """A copy of the tiny dataset with a sidecar holding the tokenizer's own counts (times ``scale``,
    rounded per position)."""
    shutil.copytree(tiny_data.dataset_dir, folder)
    table = TokenBytes.from_tokenizer(tiny_data.tokenizer_path)
    for index, shard in enumerate(shard_paths(folder, "val")):
        tokens = read_shard_tokens(shard).astype(np.int64)
        counts = np.zeros(tokens.size, dtype=np.int64)
        counts[1:] = table.target_bytes(tokens[1:], tokens[:-1])
        counts = np.round(counts * scale).astype(np.uint16)
        write_shard(folder / f"fineweb_val_bytes_{index:06d}.bin", counts[:-1] if drop_last else counts)
    return DataPaths(dataset_dir=folder, tokenizer_path=tiny_data.tokenizer_path)


def test_a_sidecar_is_not_a_token_shard_and_scores_what_it_counts(tiny_data, tmp_path):
    data = with_sidecar(tiny_data, tmp_path / "data", scale=2.0)  # whole bytes: an exact ratio
    assert [p.name for p in shard_paths(data.dataset_dir, "val")] == [
        p.name for p in shard_paths(tiny_data.dataset_dir, "val")
    ]
    assert len(sidecar_paths(data.dataset_dir)) == 1
    tokens = read_shard_tokens(shard_paths(data.dataset_dir, "val")[0])
    counts = read_shard_tokens(sidecar_paths(data.dataset_dir)[0])
    nll = np.full(tokens.size - 1, 2.0, dtype=np.float32)
    table = TokenBytes.from_tokenizer(data.tokenizer_path)
    by_table, _ = score(nll, tokens, table)
    by_sidecar, _ = score(nll, tokens, table, counts)
    assert by_sidecar == pytest.approx(by_table / 2.0, rel=1e-12)


def test_a_run_on_a_dataset_with_a_sidecar_is_scored_with_it(make_spec, tiny_data, tmp_path):
    plain = run(make_spec())
    same = run(make_spec(data=with_sidecar(tiny_data, tmp_path / "same")))
    assert same.status is RunStatus.OK and same.val_bpb == pytest.approx(plain.val_bpb, rel=1e-12)
    assert any("byte sidecar" in note for note in same.notes)
    more = run(make_spec(data=with_sidecar(tiny_data, tmp_path / "more", scale=2.0)))
    assert more.val_bpb == pytest.approx(plain.val_bpb / 2.0, rel=1e-12) and more.val_loss == plain.val_loss


def test_a_sidecar_that_does_not_fit_the_validation_shards_stops_the_run(make_spec, tiny_data, tmp_path):
    short = with_sidecar(tiny_data, tmp_path / "short", drop_last=True)
    with pytest.raises(HarnessError, match=r"fineweb_val_bytes_000000\.bin holds .* counts but"):
        run(make_spec(data=short))
    foreign = with_sidecar(tiny_data, tmp_path / "foreign", scale=3.0)
    with pytest.raises(HarnessError, match="belongs to another stream"):
        run(make_spec(data=foreign))
