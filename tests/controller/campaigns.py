"""Small campaigns for the search-loop tests and the duty-cycle benchmark.

Each campaign runs ``tests/programs/unigram_trainer.py`` (stdlib only, ~0.1 s per run) on the
``tiny_data`` shards, with CPU tiers and the replay proposer, so a whole loop takes seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
UNIGRAM_TRAINER = REPO_ROOT / "tests" / "programs" / "unigram_trainer.py"


def knob_line(hypothesis: str, **knobs: object) -> dict[str, Any]:
    """A knob-only replay line."""
    return {"hypothesis": hypothesis, "knobs": {k: str(v) for k, v in knobs.items()}}


def edit_reply(hypothesis: str, search: str, replace: str, path: str = "unigram_trainer.py") -> str:
    """What a model would answer: a hypothesis and one SEARCH/REPLACE edit of the trainer."""
    return (
        f"<hypothesis>{hypothesis}</hypothesis>\n<rationale>test edit</rationale>\n"
        f'<edit path="{path}">\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n</edit>'
    )


def edit_line(hypothesis: str, search: str, replace: str) -> dict[str, Any]:
    return {"reply": edit_reply(hypothesis, search, replace)}


def write_replay(path: Path, lines: Iterable[Mapping[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string for our values


def _table(name: str, values: Mapping[str, object]) -> str:
    lines = [f"[{name}]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"


def write_campaign(
    folder: Path,
    *,
    dataset_dir: Path,
    tokenizer_path: Path,
    replay: Iterable[Mapping[str, Any]] = (),
    name: str = "t",
    max_trials: int | None = 4,
    max_wall_hours: float | None = None,
    cpu_slots: int = 1,
    operations: Mapping[str, float] | None = None,
    proxy_knobs: Mapping[str, object] | None = None,
    proxy: Mapping[str, object] | None = None,
    preflight_smoke: bool = True,
    seed_program: Path = UNIGRAM_TRAINER,
    sampler: str = "random",
    pruner: str = "none",
    tables: Mapping[str, Mapping[str, object]] | None = None,
) -> Path:
    """Write ``folder/<name>.toml`` (and its replay file) and return the TOML path.

    Defaults: explore and confirm on the ``proxy`` tier, code proposals only (mutate weight 1), no
    pruning (``pruner="median"`` prunes once one same-tier trial has completed), a random sampler (TPE
    adds nothing to a few trials and costs time). ``tables`` adds whole tables (e.g. ``plausibility``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    replay_path = write_replay(folder / f"{name}_replay.jsonl", replay)
    proxy_table = {
        "device": "cpu",
        "train_seconds": 20,
        "eval_seconds": 20,
        "startup_grace_seconds": 20,
        **(proxy or {}),
    }
    vocab = {"VOCAB_SIZE": 512}
    text = "".join(
        [
            _table(
                "campaign",
                {"name": name, "seed_program": str(seed_program), "runs_dir": str(folder / "runs")},
            ),
            _table("data", {"dataset_dir": str(dataset_dir), "tokenizer_path": str(tokenizer_path)}),
            _table("sandbox", {"backend": "local", "cpu_slots": cpu_slots}),
            _table(
                "tiers.smoke",
                {"device": "cpu", "train_seconds": 20, "eval_seconds": 20, "startup_grace_seconds": 20},
            ),
            _table("tiers.smoke.knobs", {**vocab, "SLEEP_SECONDS": 0.0}),
            _table("tiers.proxy", proxy_table),
            _table("tiers.proxy.knobs", {**vocab, **(proxy_knobs or {})}),
            _table(
                "search",
                {"explore_tier": "proxy", "confirm_tier": "proxy", "preflight_smoke": preflight_smoke},
            ),
            _table("budget", {"max_trials": max_trials, "max_wall_hours": max_wall_hours}),
            _table("agent", {"proposer": "replay", "replay_file": str(replay_path)}),
            _table(
                "operations",
                dict(operations or {"mutate": 1.0, "tune": 0.0, "hypothesis": 0.0, "confirm": 0.0}),
            ),
            _table("frontier", {"k": 3}),
            _table(
                "study",
                {"sampler": sampler, "pruner": pruner, "n_startup_trials": 2, "pruner_startup_trials": 1},
            ),
            *(_table(name, values) for name, values in (tables or {}).items()),
        ]
    )
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path
