"""Fixtures for the search-loop tests: a small unigram-trainer campaign written to tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.controller.campaigns import write_campaign


@pytest.fixture
def make_campaign(tmp_path: Path, tiny_data) -> Callable[..., Path]:
    """``make_campaign(replay=[...], max_trials=4, ...)``: write a campaign TOML, return its path."""

    def make(**options) -> Path:
        return write_campaign(
            tmp_path,
            dataset_dir=tiny_data.dataset_dir,
            tokenizer_path=tiny_data.tokenizer_path,
            **options,
        )

    return make


@pytest.fixture
def run_campaign() -> Callable[..., tuple[str, list[str]]]:
    """Run the controller in this process until it stops; return (why it stopped, what it said)."""

    def run(toml: Path) -> tuple[str, list[str]]:
        from controller.config import load_campaign
        from controller.search.loop import Controller
        from controller.search.workspace import open_workspace

        said: list[str] = []
        with open_workspace(load_campaign(toml), progress=False) as ws:
            why = Controller(ws, say=said.append).run()
        return why, said

    return run
