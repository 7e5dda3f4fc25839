"""Shared fixtures: a real-text tokenizer and challenge-format shards built from tests/data/corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

CORPUS_DIR = Path(__file__).parent / "data" / "corpus"


@pytest.fixture(scope="session")
def corpus_texts() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(CORPUS_DIR.glob("*.txt"))]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, corpus_texts):
    """A 512-token SentencePiece tokenizer and one train + one val shard (val = first 8 scenes)."""
    from datatools.prepare import build_dataset, shuffled_documents

    out = tmp_path_factory.mktemp("tiny_data")
    return build_dataset(shuffled_documents(corpus_texts), out, vocab_size=512, val_docs=8, name="tiny")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every Docker test is slow (an engine, an image, a container per phase): ``-m "not slow"``, the
    fast set, leaves them out without each one saying so."""
    for item in items:
        if item.get_closest_marker("docker") is not None and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
