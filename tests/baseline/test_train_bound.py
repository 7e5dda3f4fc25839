"""The seed trainer on the demo's cpu smoke tier, through the sandbox: bound by steps, it trains its
ITERATIONS whatever its own wall-clock cap, and scores the same; cut by a cap, it is recorded as cut."""

from __future__ import annotations

from pathlib import Path

import pytest

from baseline import train_gpt as tg
from controller.config import load_campaign
from controller.search.trial import knob_overrides
from sandbox import DataPaths, Limits, RunSpec, RunStatus, run
from sandbox.knobs import parse_knob_table, rewrite_knob_defaults
from sandbox.spec import IntegritySettings, StepExtent

REPO = Path(__file__).resolve().parents[2]
TRAIN_GPT = Path(tg.__file__)


@pytest.mark.slow
def test_a_step_bound_baseline_trains_its_planned_steps_and_a_capped_one_is_cut(tiny_data, tmp_path):
    config = load_campaign(REPO / "experiments" / "demo.toml", check_paths=False)
    smoke = config.tiers.get("smoke")
    smoke = smoke.model_copy(update={"knobs": {**smoke.knobs, "VOCAB_SIZE": 512}})
    source = TRAIN_GPT.read_text(encoding="utf-8")
    env = knob_overrides(smoke, "smoke", parse_knob_table(source))
    assert env["MAX_WALLCLOCK_SECONDS"] == "0" and env["ITERATIONS"] == "3"

    def run_baseline(name: str, program_source: str, knobs: dict[str, str], step_bound: bool):
        program = tmp_path / name / "program"
        program.mkdir(parents=True)
        (program / "train_gpt.py").write_text(program_source, encoding="utf-8")
        result = run(
            RunSpec(
                program_dir=program,
                knobs=knobs,
                phases="all",
                data=DataPaths(dataset_dir=tiny_data.dataset_dir, tokenizer_path=tiny_data.tokenizer_path),
                # generous: importing torch on a loaded 2-core machine can take many seconds
                limits=Limits(train_seconds=120, eval_seconds=120, startup_grace_seconds=60),
                out_dir=tmp_path / name / "out",
                eval_seq_len=smoke.harness_eval_seq_len(),
                integrity=IntegritySettings(rows=4, tail_tokens=512),
                planned_steps=3,
                step_bound=step_bound,
            )
        )
        assert result.status is RunStatus.OK, (result.reason, result.error_excerpt)
        return result

    # A program whose own cap would stop it after its first step still trains all three.
    tiny_cap = rewrite_knob_defaults(source, {"MAX_WALLCLOCK_SECONDS": 1e-6})
    capped_default = run_baseline("capped-default", tiny_cap, env, True)
    plain = run_baseline("plain", source, env, True)
    for result in (capped_default, plain):
        assert (result.steps, result.steps_planned, result.step_extent) == (3, 3, StepExtent.PLANNED)
    assert capped_default.val_bpb == plain.val_bpb  # the same steps and schedule: the same score

    # On a wall-clock tier the cap ends training first, and the result says so.
    cut = run_baseline("wallclock", source, {**env, "MAX_WALLCLOCK_SECONDS": "1e-06"}, False)
    assert (cut.steps, cut.steps_planned, cut.step_extent) == (1, 3, StepExtent.CUT)
    assert any("trained 1 of 3 planned steps" in note for note in cut.notes), cut.notes
