"""The controller's threads may parse programs at once (controller.ast_lock)."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

import controller  # noqa: F401  (installs the lock)

SEED = (Path(__file__).resolve().parents[2] / "baseline" / "train_gpt.py").read_text()


@pytest.mark.slow
def test_ast_parse_is_serialised_and_many_threads_parse_the_seed_program_at_once():
    assert getattr(ast.parse, "__autogolf_serialised__", False)
    failures: list[BaseException] = []

    def parse_many() -> None:
        try:
            for _ in range(20):
                ast.parse(SEED)
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever a thread hit
            failures.append(exc)

    threads = [threading.Thread(target=parse_many) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
