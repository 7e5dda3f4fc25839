"""Two workers on one PostgreSQL study must not spend trials on each other's experiments (issue 13, 6b).

Each worker used to seed its sampler with the campaign seed, so both drew the same knob settings in
the same order: the study then held byte-identical tune trials on the same parent and tier.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from controller.config import load_campaign
from controller.store.study import CampaignStudy
from tests.controller.campaigns import write_campaign
from tests.controller.pg import postgres_url  # noqa: F401 (a fixture)
from tests.controller.test_workers import TUNE_ONLY, git, run_workers

MAX_TRIALS = 10


def experiments_run_twice(records) -> dict[tuple, list[int]]:
    """Trials that ran one knob setting on one parent and tier, keyed by (parent, tier, setting).

    A trial re-queued after its run was lost is the same experiment as its re-run, so it is left out;
    so are trials that never ran (still waiting)."""
    superseded = {r.attrs.requeued_from for r in records}
    groups: dict[tuple, list[int]] = defaultdict(list)
    for record in records:
        attrs = record.attrs
        if record.state == "WAITING" or record.number in superseded or not attrs.search_space:
            continue
        key = (attrs.parent_trial, attrs.tier, json.dumps(attrs.knob_values, sort_keys=True))
        groups[key].append(record.number)
    return {key: numbers for key, numbers in groups.items() if len(numbers) > 1}


@pytest.mark.slow
def test_two_workers_never_run_one_knob_setting_twice_on_a_parent_and_tier(tmp_path, tiny_data, postgres_url):  # noqa: F811
    toml = write_campaign(
        tmp_path,
        dataset_dir=tiny_data.dataset_dir,
        tokenizer_path=tiny_data.tokenizer_path,
        name="unique",
        max_trials=MAX_TRIALS,
        operations=TUNE_ONLY,
        # the eval sleep is a searchable knob of the trainer: fixed here so a run takes ~0.3 s
        proxy_knobs={"SLEEP_SECONDS": 0.3, "EVAL_SLEEP_SECONDS": 0.0},
        preflight_smoke=False,
        sampler="tpe",  # the campaign default, with its random start-up trials
    )
    with toml.open("a", encoding="utf-8") as handle:  # [study] is the file's last table
        handle.write(f"storage = {json.dumps(postgres_url)}\n")
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote))
    run_workers(toml, postgres_url, remote, tmp_path, ("w0", "w1"), timeout=180)

    records = CampaignStudy.from_config(load_campaign(toml)).trials()
    tuned = [r for r in records if r.attrs.operation == "tune" and r.state == "COMPLETE"]
    # Not vacuous: both workers tuned, and most of the budget went to tuning the seed program.
    assert {r.attrs.worker_name for r in tuned} == {"w0", "w1"}
    assert len(tuned) >= MAX_TRIALS // 2, [(r.number, r.state) for r in records]
    twice = experiments_run_twice(records)
    assert not twice, f"trials that repeat an experiment of the study: {sorted(twice.values())}"
