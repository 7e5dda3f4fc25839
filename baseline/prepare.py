"""Data for autogolf: fetch the official shards, or build challenge-format shards from local text.

(Interim minimal version: ``build_dataset``. The CLI, fetch and embedded corpus come next.)
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm

from baseline.shards import write_shard

BOS_ID = 1


@dataclass(frozen=True)
class BuiltDataset:
    dataset_dir: Path
    tokenizer_path: Path
    train_tokens: int
    val_tokens: int
    val_docs: int


def train_tokenizer(docs: list[str], model_prefix: Path, vocab_size: int) -> Path:
    """SentencePiece BPE with the official settings (byte fallback, split digits, NFKC, no dummy prefix)."""
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(docs),
        model_prefix=str(model_prefix),
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="nfkc",
        add_dummy_prefix=False,
        pad_id=0,
        bos_id=1,
        eos_id=2,
        unk_id=3,
        character_coverage=0.9999,
        max_sentence_length=1 << 20,
        minloglevel=2,
    )
    return model_prefix.with_suffix(".model")


def build_dataset(
    docs: Iterable[str], out_dir: Path, *, vocab_size: int = 1024, val_docs: int = 50, name: str = "corpus"
) -> BuiltDataset:
    """Tokenizer + shards from documents: val = the first ``val_docs`` documents, BOS before each."""
    docs = [d for d in docs if d.strip()]
    out_dir = Path(out_dir)
    tok_dir = out_dir / "tokenizers"
    data_dir = out_dir / "datasets" / f"{name}_sp{vocab_size}"
    tok_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    model = train_tokenizer(docs[val_docs:], tok_dir / f"{name}_{vocab_size}_bpe", vocab_size)
    sp = spm.SentencePieceProcessor(model_file=str(model))

    def encode(split: list[str]) -> np.ndarray:
        out: list[int] = []
        for ids in sp.encode(split):
            out.append(BOS_ID)
            out.extend(ids)
        return np.asarray(out, dtype=np.uint16)

    val = encode(docs[:val_docs])
    train = encode(docs[val_docs:])
    write_shard(data_dir / "fineweb_val_000000.bin", val)
    write_shard(data_dir / "fineweb_train_000000.bin", train)
    return BuiltDataset(data_dir, model, int(train.size), int(val.size), val_docs)


def split_scenes(text: str) -> list[str]:
    """Split a play into scene-sized documents (lines starting with 'SCENE' begin a new one)."""
    docs: list[str] = []
    current: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("SCENE") and sum(len(x) for x in current) > 2000:
            docs.append("".join(current).strip())
            current = []
        current.append(line)
    if current:
        docs.append("".join(current).strip())
    return docs


def shuffled_documents(texts: Iterable[str], seed: int = 0) -> list[str]:
    docs = [d for text in texts for d in split_scenes(text)]
    random.Random(seed).shuffle(docs)
    return docs
