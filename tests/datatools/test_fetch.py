"""Fetching the official shards, run for real against a local Hugging Face cache in offline mode.

The cache is laid out the way huggingface_hub stores a dataset repository (``datasets--owner--name/``
with ``refs/main``, ``blobs/`` and ``snapshots/<commit>/`` symlinks), so ``hf_hub_download`` serves it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from datatools import fetch
from datatools.fetch import OFFICIAL_REPO_ID, default_repo_id, fetch_official
from datatools.manifest import record_build
from datatools.shards import DataError, read_shard, write_shard

COMMIT = "0123456789abcdef0123456789abcdef01234567"
MANIFEST = {
    "datasets": [
        {
            "name": "fineweb10B_sp1024",
            "tokenizer_name": "sp_bpe_1024",
            "stats": {"files_train": 3, "files_val": 1},
        },
        {
            "name": "fineweb10B_byte260",
            "tokenizer_name": "pure_byte_260",
            "stats": {"files_train": 1, "files_val": 1},
        },
    ],
    "tokenizers": [
        {
            "name": "sp_bpe_1024",
            "model_path": "tokenizers/fineweb_1024_bpe.model",
            "vocab_path": "tokenizers/fineweb_1024_bpe.vocab",
        },
        {"name": "pure_byte_260", "path": "tokenizers/fineweb_pure_byte_260.json"},
    ],
}


class FakeHubCache:
    """Files of one dataset repository in huggingface_hub's cache layout."""

    def __init__(self, root: Path, repo_id: str = OFFICIAL_REPO_ID) -> None:
        self.root = root
        self.repo = root / ("datasets--" + repo_id.replace("/", "--"))
        (self.repo / "refs").mkdir(parents=True)
        (self.repo / "refs" / "main").write_text(COMMIT)
        (self.repo / "blobs").mkdir()

    def put(self, path_in_repo: str, data: bytes) -> Path:
        blob = self.repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = self.repo / "snapshots" / COMMIT / path_in_repo
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
        return link


def shard_bytes(tmp_path: Path, tokens: np.ndarray) -> bytes:
    path = tmp_path / "scratch.bin"
    write_shard(path, tokens)
    return path.read_bytes()


@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("MATCHED_FINEWEB_REPO_ID", raising=False)


@pytest.fixture
def hub(tmp_path, offline) -> tuple[FakeHubCache, dict[str, np.ndarray]]:
    cache = FakeHubCache(tmp_path / "hf")
    cache.put("datasets/manifest.json", json.dumps(MANIFEST).encode())
    rng = np.random.default_rng(0)
    tokens = {}
    for name in [
        "fineweb_val_000000",
        "fineweb_train_000000",
        "fineweb_train_000001",
        "fineweb_train_000002",
    ]:
        tokens[name] = rng.integers(0, 1024, size=int(rng.integers(100, 300))).astype(np.uint16)
        cache.put(f"datasets/datasets/fineweb10B_sp1024/{name}.bin", shard_bytes(tmp_path, tokens[name]))
    cache.put("datasets/tokenizers/fineweb_1024_bpe.model", b"model bytes")
    cache.put("datasets/tokenizers/fineweb_1024_bpe.vocab", b"vocab bytes")
    return cache, tokens


def test_fetch_mirrors_val_the_first_train_shards_and_the_tokenizer(hub, tmp_path):
    cache, tokens = hub
    dest = tmp_path / "data"
    got = fetch_official("sp1024", dest, 2, progress=False, cache_dir=cache.root)
    dataset_dir = dest / "datasets" / "fineweb10B_sp1024"
    assert got.dataset_dir == dataset_dir
    assert sorted(p.name for p in dataset_dir.iterdir()) == [
        "fineweb_train_000000.bin",
        "fineweb_train_000001.bin",
        "fineweb_val_000000.bin",
    ]
    for name in ["fineweb_val_000000", "fineweb_train_000000", "fineweb_train_000001"]:
        np.testing.assert_array_equal(read_shard(dataset_dir / f"{name}.bin"), tokens[name])
    assert (got.train_shards, got.val_shards) == (2, 1)
    assert got.train_tokens == tokens["fineweb_train_000000"].size + tokens["fineweb_train_000001"].size
    assert got.val_tokens == tokens["fineweb_val_000000"].size
    assert got.tokenizer_path == dest / "tokenizers" / "fineweb_1024_bpe.model"
    assert got.tokenizer_path.read_bytes() == b"model bytes"
    assert (dest / "tokenizers" / "fineweb_1024_bpe.vocab").read_bytes() == b"vocab bytes"
    # The local manifest lists what was fetched: the dataset and its tokenizer, entries as published.
    assert json.loads((dest / "manifest.json").read_text()) == {
        "datasets": [MANIFEST["datasets"][0]],
        "tokenizers": [MANIFEST["tokenizers"][0]],
    }
    assert not any(p.is_symlink() for p in dest.rglob("*")), "dest must hold real files, not cache links"


def test_files_already_fetched_are_not_fetched_again(hub, tmp_path):
    cache, tokens = hub
    dest = tmp_path / "data"
    fetch_official("sp1024", dest, 1, progress=False, cache_dir=cache.root)
    for blob in (cache.repo / "blobs").iterdir():  # the cache loses everything but the manifest
        if blob.stat().st_size != len(json.dumps(MANIFEST)):
            blob.unlink()
    again = fetch_official("sp1024", dest, 1, progress=False, cache_dir=cache.root)
    np.testing.assert_array_equal(
        read_shard(again.dataset_dir / "fineweb_train_000000.bin"), tokens["fineweb_train_000000"]
    )


def test_a_damaged_local_shard_is_fetched_again(hub, tmp_path):
    cache, tokens = hub
    dest = tmp_path / "data"
    got = fetch_official("sp1024", dest, 1, progress=False, cache_dir=cache.root)
    shard = got.dataset_dir / "fineweb_val_000000.bin"
    shard.unlink()  # a new file, not a write through the hard link into the cache
    shard.write_bytes(b"\0" * 2000)
    fetch_official("sp1024", dest, 1, progress=False, cache_dir=cache.root)
    np.testing.assert_array_equal(read_shard(shard), tokens["fineweb_val_000000"])


def test_a_corrupt_shard_in_the_cache_is_named(hub, tmp_path):
    cache, tokens = hub
    good = shard_bytes(tmp_path, tokens["fineweb_train_000001"])
    cache.put("datasets/datasets/fineweb10B_sp1024/fineweb_train_000001.bin", good[:-6])  # truncated download
    with pytest.raises(DataError, match=r"fineweb_train_000001\.bin .*is corrupt.*Delete .* fetch again"):
        fetch_official("sp1024", tmp_path / "data", 2, progress=False, cache_dir=cache.root)
    assert not (tmp_path / "data" / "datasets" / "fineweb10B_sp1024" / "fineweb_train_000001.bin").exists()


def test_more_train_shards_than_published_is_refused(hub, tmp_path):
    cache, _ = hub
    with pytest.raises(
        DataError, match="sp1024 has 3 train shards on willdepueoai/parameter-golf; asked for 4"
    ):
        fetch_official("sp1024", tmp_path / "data", 4, progress=False, cache_dir=cache.root)


def test_a_variant_missing_from_the_manifest_lists_what_is_published(hub, tmp_path):
    cache, _ = hub
    with pytest.raises(DataError, match=r"sp2048 .* not published .* fineweb10B_byte260, fineweb10B_sp1024"):
        fetch_official(
            "sp2048", tmp_path / "data", 1, progress=False, cache_dir=cache.root, repo_id=OFFICIAL_REPO_ID
        )


def test_an_unreadable_manifest_names_the_file_and_the_repository(hub, tmp_path):
    cache, _ = hub
    cache.put("datasets/manifest.json", b"[1, 2]")
    with pytest.raises(
        DataError, match=r"manifest\.json: manifest must be a JSON object; it came from willdepueoai"
    ):
        fetch_official("sp1024", tmp_path / "data", 1, progress=False, cache_dir=cache.root)
    cache.put("datasets/manifest.json", b"{not json")
    with pytest.raises(DataError, match=r"manifest\.json: unreadable manifest .*delete it and fetch again"):
        fetch_official("sp1024", tmp_path / "data", 1, progress=False, cache_dir=cache.root)


def test_a_file_missing_from_the_cache_offline_says_so(hub, tmp_path):
    cache, _ = hub
    (cache.repo / "snapshots" / COMMIT / "datasets/tokenizers/fineweb_1024_bpe.vocab").unlink()
    with pytest.raises(
        DataError, match=r"fineweb_1024_bpe\.vocab .* not in the local cache .*HF_HUB_OFFLINE"
    ):
        fetch_official("sp1024", tmp_path / "data", 0, progress=False, cache_dir=cache.root)


@pytest.mark.parametrize(
    ("variant", "message"), [("gpt2", "unknown variant 'gpt2'"), ("sp1024", "must be 0 or more")]
)
def test_bad_arguments_are_refused_before_any_download(tmp_path, offline, variant, message):
    train_shards = -1 if variant == "sp1024" else 1
    with pytest.raises(DataError, match=message):
        fetch_official(variant, tmp_path, train_shards, progress=False, cache_dir=tmp_path / "empty")


def test_repo_defaults_follow_where_each_variant_is_published(monkeypatch):
    monkeypatch.delenv("MATCHED_FINEWEB_REPO_ID", raising=False)
    assert default_repo_id("sp1024") == OFFICIAL_REPO_ID
    assert default_repo_id("sp8192") == fetch.VARIANT_REPO_IDS["sp8192"] != OFFICIAL_REPO_ID
    monkeypatch.setenv("MATCHED_FINEWEB_REPO_ID", "me/my-export")
    assert default_repo_id("sp1024") == "me/my-export"


OTHER_REPO_ID = fetch.VARIANT_REPO_IDS["sp8192"]
OTHER_MANIFEST = {
    "datasets": [
        {
            "name": "fineweb10B_sp8192",
            "tokenizer_name": "sp_bpe_8192",
            "stats": {"files_train": 1, "files_val": 1},
        },
        {  # the same name as the official dataset, published with other contents
            "name": "fineweb10B_sp1024",
            "tokenizer_name": "sp_bpe_1024",
            "stats": {"files_train": 9, "files_val": 1},
        },
    ],
    "tokenizers": [
        {
            "name": "sp_bpe_8192",
            "model_path": "tokenizers/fineweb_8192_bpe.model",
            "vocab_path": "tokenizers/fineweb_8192_bpe.vocab",
        },
        MANIFEST["tokenizers"][0],
    ],
}


@pytest.fixture
def other_hub(hub, tmp_path) -> FakeHubCache:
    """The participant's repository, in the same cache as the official one (``hub``)."""
    cache = FakeHubCache(tmp_path / "hf", OTHER_REPO_ID)
    cache.put("datasets/manifest.json", json.dumps(OTHER_MANIFEST).encode())
    rng = np.random.default_rng(1)
    for name in ["fineweb_val_000000", "fineweb_train_000000"]:
        tokens = rng.integers(0, 8192, size=200).astype(np.uint16)
        cache.put(f"datasets/datasets/fineweb10B_sp8192/{name}.bin", shard_bytes(tmp_path, tokens))
    cache.put("datasets/tokenizers/fineweb_8192_bpe.model", b"model 8192")
    cache.put("datasets/tokenizers/fineweb_8192_bpe.vocab", b"vocab 8192")
    return cache


def listed(dest: Path) -> tuple[list[str], list[str]]:
    manifest = json.loads((dest / "manifest.json").read_text())
    return [d["name"] for d in manifest["datasets"]], [t["name"] for t in manifest["tokenizers"]]


def test_fetching_variants_from_two_repositories_into_one_folder_keeps_both_entries(other_hub, tmp_path):
    dest = tmp_path / "data"
    fetch_official("sp1024", dest, 1, progress=False, cache_dir=other_hub.root)
    second = fetch_official("sp8192", dest, 1, progress=False, cache_dir=other_hub.root)
    assert second.repo_id == OTHER_REPO_ID
    assert listed(dest) == (["fineweb10B_sp1024", "fineweb10B_sp8192"], ["sp_bpe_1024", "sp_bpe_8192"])
    manifest = json.loads((dest / "manifest.json").read_text())
    # The official entry survives; the other repository's sp1024 entry was never fetched, so never merged.
    assert manifest["datasets"][0] == MANIFEST["datasets"][0]
    fetch_official("sp1024", dest, 2, progress=False, cache_dir=other_hub.root)  # fetching again is fine
    assert listed(dest) == (["fineweb10B_sp1024", "fineweb10B_sp8192"], ["sp_bpe_1024", "sp_bpe_8192"])


# What `prepare build` records of a one-shard build (record_build's stats).
BUILD_STATS = {
    "files_train": 1,
    "files_val": 1,
    "tokens_train": 5,
    "tokens_val": 5,
    "docs_train": 1,
    "docs_val": 1,
}


def test_a_fetch_keeps_the_entries_of_a_local_build(hub, tmp_path):
    cache, _ = hub
    dest = tmp_path / "data"
    dest.mkdir()
    record_build(
        dest, dataset_name="t_sp400", tokenizer_name="t_sp400", vocab_size=400, bos_id=1, stats=BUILD_STATS
    )
    built = json.loads((dest / "manifest.json").read_text())
    fetch_official("sp1024", dest, 0, progress=False, cache_dir=cache.root)
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["datasets"] == [*built["datasets"], MANIFEST["datasets"][0]]
    assert manifest["tokenizers"] == [*built["tokenizers"], MANIFEST["tokenizers"][0]]


def test_the_same_dataset_with_other_contents_is_refused_before_any_download(other_hub, tmp_path):
    dest = tmp_path / "data"
    fetch_official("sp1024", dest, 1, progress=False, cache_dir=other_hub.root)
    before = (dest / "manifest.json").read_text()
    with pytest.raises(
        DataError,
        match=r"manifest\.json already lists dataset 'fineweb10B_sp1024' with other contents than "
        r"kevclark/parameter-golf publishes \(they differ in stats\); fetch into another folder",
    ):
        fetch_official("sp1024", dest, 2, progress=False, cache_dir=other_hub.root, repo_id=OTHER_REPO_ID)
    assert (dest / "manifest.json").read_text() == before
    assert not (dest / "datasets" / "fineweb10B_sp1024" / "fineweb_train_000001.bin").exists()


def test_a_built_tokenizer_holding_the_official_tokenizer_files_is_refused(hub, tmp_path):
    cache, _ = hub
    dest = tmp_path / "data"
    dest.mkdir()
    # A local build named after the official tokenizer file: fetch would keep the built .model file.
    record_build(
        dest,
        dataset_name="mine",
        tokenizer_name="fineweb_1024_bpe",
        vocab_size=1024,
        bos_id=1,
        stats=BUILD_STATS,
    )
    with pytest.raises(
        DataError,
        match=r"tokenizer 'fineweb_1024_bpe' already uses tokenizers/fineweb_1024_bpe\.model, "
        r"tokenizers/fineweb_1024_bpe\.vocab, which tokenizer 'sp_bpe_1024' from willdepueoai",
    ):
        fetch_official("sp1024", dest, 1, progress=False, cache_dir=cache.root)
    assert not (dest / "datasets" / "fineweb10B_sp1024").exists()


def test_an_unreadable_local_manifest_is_named_before_any_download(hub, tmp_path):
    cache, _ = hub
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "manifest.json").write_text("{half")
    with pytest.raises(DataError, match=r"data/manifest\.json: unreadable manifest .*fix or delete it"):
        fetch_official("sp1024", dest, 1, progress=False, cache_dir=cache.root)
    assert not (dest / "datasets").exists()
