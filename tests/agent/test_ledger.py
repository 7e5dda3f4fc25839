"""The ledger: one JSON line per call, running totals, and totals rebuilt on resume."""

from __future__ import annotations

import json

import pytest

from agent.ledger import Ledger


def test_lines_are_appended_and_totals_survive_a_reload(tmp_path):
    path = tmp_path / "runs" / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.record(model="m", outcome="ok", prompt_tokens=1000, completion_tokens=200, cost_usd=0.01)
    ledger.record(model="m", outcome="timeout", latency_seconds=1.5, detail="no answer")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(d["outcome"], d["prompt_tokens"]) for d in lines] == [("ok", 1000), ("timeout", 0)]
    assert lines[1]["latency_seconds"] == 1.5 and lines[0]["time"].endswith("+00:00")

    resumed = Ledger.load(path)
    resumed.record(model="m", outcome="ok", prompt_tokens=10, completion_tokens=5, cost_usd=0.5)
    assert resumed.calls == 3
    assert (resumed.prompt_tokens, resumed.completion_tokens) == (1010, 205)
    assert resumed.total_cost_usd == pytest.approx(0.51)
    assert len(path.read_text().splitlines()) == 3


def test_a_torn_last_line_is_skipped_on_load(tmp_path):
    path = tmp_path / "ledger.jsonl"
    Ledger(path).record(model="m", outcome="ok", prompt_tokens=7, cost_usd=0.25)
    with path.open("a") as f:
        f.write('{"time": "2026-01-01", "model": "m", "prompt_to')
    loaded = Ledger.load(path)
    assert loaded.calls == 1 and loaded.prompt_tokens == 7 and loaded.total_cost_usd == 0.25


def test_in_memory_ledger_writes_nothing(tmp_path):
    ledger = Ledger(None)
    ledger.record(model="m", outcome="ok", prompt_tokens=3)
    assert ledger.prompt_tokens == 3 and list(tmp_path.iterdir()) == []
