"""The campaign study wrapper, against real SQLite Optuna storage in tmp_path."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import optuna
import pytest

from controller.config import load_campaign
from controller.errors import StudyError
from controller.store import knob_draws
from controller.store.archive import Candidate, Operation
from controller.store.study import CampaignStudy, budget_trials, limit_constraints
from controller.store.trial_attrs import TrialAttrs
from sandbox.knobs import Knob
from sandbox.spec import Limits, RunStatus

REPO = Path(__file__).resolve().parents[2]
KNOBS = [
    Knob(name="NUM_LAYERS", type="int", default=9, low=4, high=16),
    Knob(name="MATRIX_LR", type="float", default=0.04, low=0.005, high=0.2, log=True),
    Knob(name="COMPRESSOR", type="str", default="auto", choices=("auto", "zlib")),
    Knob(name="DATA_PATH", type="str", default="./data"),
]
PARENT = Candidate(
    trial=0,
    commit="c0ffee" * 6 + "abcd",
    parent_trial=None,
    tier="proxy",
    status=RunStatus.OK,
    val_bpb=1.3,
    operation=Operation.SEED,
)


def study_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'run' / 'study.db'}"


def open_study(tmp_path: Path, **kw) -> CampaignStudy:
    return CampaignStudy(study_url(tmp_path), "camp", seed=0, **kw)


def test_ask_samples_searchable_knobs_and_fixes_the_rest(tmp_path):
    study = open_study(tmp_path)
    handle = study.ask(
        PARENT, KNOBS, {"NUM_LAYERS": 2, "ITERATIONS": 50}, tier="proxy", operation=Operation.TUNE
    )
    values = handle.knob_values
    assert values["NUM_LAYERS"] == 2 and values["ITERATIONS"] == 50 and values["DATA_PATH"] == "./data"
    assert 0.005 <= values["MATRIX_LR"] <= 0.2 and values["COMPRESSOR"] in ("auto", "zlib")
    study.tell(handle, 1.25, limit_constraints(15_000_000, 500.0, Limits()))
    (record,) = study.trials()
    assert set(record.params) == {"MATRIX_LR", "COMPRESSOR"}
    assert record.attrs.parent_trial == 0 and record.attrs.parent_commit == PARENT.commit
    assert record.attrs.tier == "proxy" and record.attrs.operation == "tune"
    assert record.state == "COMPLETE" and record.value == 1.25 and record.feasible
    assert record.constraints == {"artifact_bytes": -1_000_000.0, "train_seconds": -100.0}


def test_over_the_limits_is_recorded_as_infeasible(tmp_path):
    study = open_study(tmp_path)
    handle = study.ask(None, KNOBS, tier="proxy", operation=Operation.SEED)
    study.tell(handle, 1.2, limit_constraints(16_000_001, 500.0, Limits()), TrialAttrs(hypothesis="seed"))
    (record,) = study.trials()
    assert not record.feasible and record.attrs.hypothesis == "seed"


def test_changed_knob_shapes_get_their_own_parameters(tmp_path):
    study = open_study(tmp_path)
    first = study.ask(PARENT, KNOBS, tier="proxy", operation="tune")
    study.tell(first, 1.2, {})
    grown = [
        Knob(name="NUM_LAYERS", type="int", default=9, low=2, high=24),  # range change: same parameter
        Knob(name="MATRIX_LR", type="float", default=0.04, low=0.005, high=0.2),  # log dropped
        Knob(name="COMPRESSOR", type="str", default="auto", choices=("auto", "zlib", "zstd")),  # new choice
    ]
    second = study.ask(PARENT, grown, tier="proxy", operation="tune")
    study.tell(second, 1.1, {})
    params = study.trials()[1].params
    assert "NUM_LAYERS" in params
    assert "MATRIX_LR[float]" in params
    assert any(p.startswith("COMPRESSOR[choice-") for p in params)
    assert second.knob_values["COMPRESSOR"] in ("auto", "zlib", "zstd")


def _finish_with_curve(study: CampaignStudy, tier: str, losses: list[float], value: float) -> None:
    handle = study.ask(PARENT, KNOBS, tier=tier, operation="tune")
    for step, loss in enumerate(losses):
        study.report(handle, step * 100, loss)
    study.tell(handle, value, {})


def test_median_pruner_compares_against_the_same_tier_only(tmp_path):
    study = open_study(tmp_path, pruner_startup_trials=3)
    for shift in (0.0, 0.1, 0.2):
        _finish_with_curve(study, "proxy", [6.0 + shift, 4.0 + shift, 3.5 + shift], 1.3 + shift)
    hopeless = study.ask(PARENT, KNOBS, tier="proxy", operation="tune")
    assert not study.report(hopeless, 0, 6.05)  # better than the median at step 0
    assert study.report(hopeless, 100, 5.5)  # worse than every earlier run at step 100
    study.prune(hopeless, "median rule")
    other_tier = study.ask(PARENT, KNOBS, tier="full", operation="tune")
    assert not study.report(other_tier, 100, 5.5)  # no full-tier history yet
    assert study.trials()[3].state == "PRUNED"


def test_pruner_waits_for_warmup_and_enough_history(tmp_path):
    study = open_study(tmp_path, pruner_startup_trials=2, pruner_warmup_steps=200)
    _finish_with_curve(study, "proxy", [6.0, 4.0, 3.5], 1.3)
    early = study.ask(PARENT, KNOBS, tier="proxy", operation="tune")
    assert not study.report(early, 100, 9.0)  # only one earlier run: not enough history
    study.prune(early)
    _finish_with_curve(study, "proxy", [6.0, 4.0, 3.5], 1.3)
    late = study.ask(PARENT, KNOBS, tier="proxy", operation="tune")
    assert not study.report(late, 100, 9.0)  # still in warm-up
    assert study.report(late, 200, 9.0)


def test_diverged_loss_says_stop(tmp_path):
    study = open_study(tmp_path)
    handle = study.ask(PARENT, KNOBS, tier="proxy", operation="tune")
    assert study.report(handle, 10, math.nan)


def test_fail_and_non_finite_results_are_failures_with_reasons(tmp_path):
    study = open_study(tmp_path)
    crashed = study.ask(PARENT, KNOBS, tier="proxy", operation="mutate")
    study.fail(crashed, "crashed: CUDA error")
    nan = study.ask(PARENT, KNOBS, tier="proxy", operation="mutate")
    study.tell(nan, math.inf, {})
    first, second = study.trials()
    assert (first.state, first.attrs.status_reason) == ("FAIL", "crashed: CUDA error")
    assert second.state == "FAIL" and "not finite" in second.attrs.status_reason


def test_notes_for_the_dashboard_hold_hypothesis_and_diff(tmp_path):
    study = open_study(tmp_path)
    handle = study.ask(PARENT, KNOBS, tier="proxy", operation="mutate")
    study.set_note(handle, "Wider MLP", "-MLP_MULT = 2\n+MLP_MULT = 3")
    note = study.trials()[0].attrs.note_markdown
    assert note.startswith("### Wider MLP") and "+MLP_MULT = 3" in note


def test_dashboard_note_is_saved_where_optuna_dashboard_reads_it(tmp_path):
    dashboard_notes = pytest.importorskip("optuna_dashboard._note", reason="optuna-dashboard not installed")
    study = open_study(tmp_path)
    handle = study.ask(PARENT, KNOBS, tier="proxy", operation="mutate")
    study.set_note(handle, "Wider MLP", "-MLP_MULT = 2\n+MLP_MULT = 3")
    # The dashboard reads the study's system attributes, keyed by trial id, through the storage.
    storage = optuna.storages.RDBStorage(study_url(tmp_path))
    study_id = storage.get_study_id_from_name(study.name)
    attrs = storage.get_study_system_attrs(study_id)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, handle.number)
    note = dashboard_notes.get_note_from_system_attrs(attrs, trial_id)
    assert note["body"].startswith("### Wider MLP") and "+MLP_MULT = 3" in note["body"]


def test_recover_stale_fails_dead_runs_and_requeues_them_once(tmp_path):
    before = open_study(tmp_path)
    alive = before.ask(PARENT, KNOBS, tier="proxy", operation="tune", attrs=TrialAttrs(hypothesis="p1"))
    dead = before.ask(PARENT, KNOBS, tier="proxy", operation="tune", attrs=TrialAttrs(hypothesis="p2"))
    # The controller is killed here; a new one opens the same storage.
    after = open_study(tmp_path)
    assert after.recover_stale(lambda n: n == alive.number) == [dead.number]
    assert after.recover_stale(lambda n: n == alive.number) == []
    states = {t.number: t.state for t in after.trials()}
    assert states[dead.number] == "FAIL" and states[alive.number] == "RUNNING"
    assert "stale" in after.trials()[dead.number].attrs.status_reason
    assert after.waiting_requeues() == 1
    again = after.ask_requeued()
    assert again is not None and again.requeued_from == dead.number
    assert again.knob_values == dead.knob_values and again.parent_trial == 0
    assert again.attrs.hypothesis == "p2" and again.attrs.original_trial == dead.number
    after.tell(again, 1.2, {})
    assert after.trials()[again.number].params == after.trials()[dead.number].params
    assert after.ask_requeued() is None


def test_of_two_recoverers_only_the_one_whose_fail_won_requeues(tmp_path):
    """The second recoverer read the trial as RUNNING, then the first failed and re-queued it: the
    storage refuses the second change, so the second queues nothing."""
    first = open_study(tmp_path)
    dead = first.ask(PARENT, KNOBS, tier="proxy", operation="tune")
    second = open_study(tmp_path)
    won_meanwhile: list[int] = []

    def dead_once_the_other_has_recovered_it(number: int) -> bool:
        won_meanwhile.extend(first.recover_stale(lambda n: False))
        return False

    assert second.recover_stale(dead_once_the_other_has_recovered_it) == []
    assert won_meanwhile == [dead.number]
    assert second.waiting_requeues() == 1
    assert [t.attrs.requeued_from for t in second.trials()[1:]] == [dead.number]


def test_a_trial_its_own_process_finishes_during_recovery_is_not_rerun(tmp_path):
    owner = open_study(tmp_path)
    running = owner.ask(PARENT, KNOBS, tier="proxy", operation="tune")
    recoverer = open_study(tmp_path)

    def finished_meanwhile(number: int) -> bool:
        owner.tell(running, 1.2, {})
        return False

    assert recoverer.recover_stale(finished_meanwhile) == []
    told = recoverer.trial(running.number)
    assert told.state == "COMPLETE" and "status_reason" not in told.attrs.written()
    assert recoverer.waiting_requeues() == 0


def test_a_trial_whose_run_keeps_being_lost_is_given_up_after_max_reruns(tmp_path):
    study = open_study(tmp_path, max_reruns=2)
    chain = [study.ask(PARENT, KNOBS, tier="proxy", operation="tune").number]
    for lost in (1, 2):
        assert study.recover_stale(lambda n: False) == [chain[-1]]
        assert [t.number for t in budget_trials(study.trials())] == [chain[-1] + 1], "the re-run counts"
        rerun = study.ask_requeued()
        assert rerun is not None and rerun.attrs.lost_runs == lost
        assert rerun.attrs.original_trial == chain[0]
        chain.append(rerun.number)
    assert study.recover_stale(lambda n: False) == [chain[-1]]
    assert study.waiting_requeues() == 0, "a third lost run is not re-run"
    last = study.trial(chain[-1])
    assert last.state == "FAIL" and last.attrs.gave_up is True
    assert "lost 3 times" in last.attrs.status_reason
    assert [t.number for t in budget_trials(study.trials())] == [chain[-1]], "the experiment counts once"
    assert all(study.trial(n).state == "FAIL" for n in chain)


def test_a_trial_set_aside_by_a_stop_is_requeued_without_counting_as_a_lost_run(tmp_path):
    study = open_study(tmp_path, max_reruns=0)
    handle = study.ask(PARENT, KNOBS, tier="proxy", operation="tune")
    for _ in range(3):
        study.requeue(handle, "not started: the campaign stopped while it waited for a slot")
        handle = study.ask_requeued()
        assert handle is not None and handle.attrs.lost_runs == 0
    assert study.recover_stale(lambda n: False) == [handle.number]  # its first lost run: over the cap
    assert study.waiting_requeues() == 0


def test_ask_requeued_takes_each_waiting_trial_once_and_creates_none(tmp_path):
    study = open_study(tmp_path)
    study.ask(PARENT, KNOBS, tier="proxy", operation="tune")
    study.recover_stale(lambda n: False)
    other = open_study(tmp_path)
    assert study.ask_requeued() is not None
    assert other.ask_requeued() is None and study.ask_requeued() is None
    assert len(study.trials()) == 2, "asking when nothing waits leaves no trial behind"


def test_plain_ask_hands_out_a_waiting_requeue_first(tmp_path):
    study = open_study(tmp_path)
    dead = study.ask(PARENT, KNOBS, tier="proxy", operation="tune")
    study.recover_stale(lambda n: False)
    handle = study.ask(None, [], tier="smoke", operation="mutate")
    assert handle.requeued_from == dead.number and handle.tier == "proxy"


@pytest.mark.slow
def test_unreachable_storage_is_a_study_error(tmp_path):
    with pytest.raises(StudyError, match="cannot open study"):
        CampaignStudy("notadb://nowhere", "camp")


def test_study_from_config_lives_in_the_run_folder(tmp_path):
    text = (REPO / "experiments" / "demo.toml").read_text()
    text = text.replace('runs_dir = "../runs"', f'runs_dir = "{tmp_path / "runs"}"')
    text = text.replace('seed_program = "../baseline/train_gpt.py"', 'seed_program = "baseline/train_gpt.py"')
    path = tmp_path / "demo.toml"
    path.write_text(text)
    study = CampaignStudy.from_config(load_campaign(path))
    assert study.name == "demo"
    assert (tmp_path / "runs" / "demo" / "study.db").is_file()


def test_handle_for_lets_a_restarted_controller_tell_a_recorded_result(tmp_path):
    before = open_study(tmp_path)
    running = before.ask(PARENT, KNOBS, tier="proxy", operation="tune", attrs=TrialAttrs(hypothesis="p"))
    after = open_study(tmp_path)
    handle = after.handle_for_running(running.number)
    assert handle.knob_values == running.knob_values and handle.attrs.hypothesis == "p"
    after.tell(handle, 1.1, {})
    assert after.trial(running.number).state == "COMPLETE"
    with pytest.raises(StudyError, match="is COMPLETE, not RUNNING"):
        after.handle_for_running(running.number)


SMALL_SPACE = [  # 3 x 2 settings
    Knob(name="NUM_LAYERS", type="int", default=2, low=1, high=3),
    Knob(name="COMPRESSOR", type="str", default="auto", choices=("auto", "zlib")),
]


def test_tuning_never_repeats_a_setting_of_the_same_parent_and_tier_until_none_is_left(tmp_path):
    study = open_study(tmp_path, sampler="random")
    seen = []
    for _ in range(6):
        handle = study.ask(PARENT, SMALL_SPACE, tier="proxy", operation="tune")
        seen.append(tuple(handle.knob_values.values()))
        study.tell(handle, 1.2, {})
    assert len(set(seen)) == 6, seen
    with pytest.raises(StudyError, match="repeats a proxy trial"):
        study.ask(PARENT, SMALL_SPACE, tier="proxy", operation="tune")
    given_up = study.trials()[-1]
    assert given_up.state == "FAIL" and given_up.attrs.knob_values is None
    # The same settings are new experiments on another tier or another parent.
    study.tell(study.ask(PARENT, SMALL_SPACE, tier="full", operation="tune"), 1.2, {})
    other_parent = dataclasses.replace(PARENT, trial=5)
    study.tell(study.ask(other_parent, SMALL_SPACE, tier="proxy", operation="tune"), 1.2, {})


def test_a_sampler_that_replays_its_draws_does_not_repeat_an_experiment(tmp_path):
    """A restarted controller (or a worker restarted under its name) seeds its sampler as before and
    would draw the settings it drew last time."""
    first = open_study(tmp_path, sampler="random")
    before = first.ask(PARENT, KNOBS, tier="proxy", operation="tune")
    again = open_study(tmp_path, sampler="random")  # same seed, fresh random state
    after = again.ask(PARENT, KNOBS, tier="proxy", operation="tune")
    assert after.knob_values != before.knob_values
    # The re-run of a lost trial is the one deliberate repeat.
    again.recover_stale(lambda n: n != before.number)
    rerun = again.ask_requeued()
    assert rerun is not None and rerun.knob_values == before.knob_values


def test_workers_seeded_apart_draw_apart(tmp_path):
    """Each on a study of its own, so the check against held settings plays no part: the campaign
    seed alone gives every process the same draws; mixed with a worker's name, they differ."""

    def first_draw(folder: str, salt: str | None) -> float:
        url = f"sqlite:///{tmp_path / folder / 'study.db'}"
        study = CampaignStudy(url, "camp", seed=0, sampler="random", sampler_salt=salt)
        return study.ask(PARENT, KNOBS, tier="proxy", operation="tune").knob_values["MATRIX_LR"]

    assert first_draw("a", None) == first_draw("b", None)
    assert first_draw("c", "w0") == first_draw("d", "w0")
    assert first_draw("e", "w0") != first_draw("f", "w1")


class _StuckSampler(optuna.samplers.RandomSampler):
    """A sampler that keeps drawing one value (TPE late in a study can come close)."""

    def sample_independent(self, study, trial, param_name, param_distribution):
        return param_distribution.low if hasattr(param_distribution, "low") else param_distribution.choices[0]


def test_a_stuck_sampler_falls_back_to_a_perturbation_inside_the_range():
    study = optuna.create_study(sampler=_StuckSampler())
    frozen = study.ask()
    lr = knob_draws.sampled_knob(KNOBS[1], {})  # log-scale float, 0.005 .. 0.2
    layers = knob_draws.sampled_knob(KNOBS[0], {})
    stuck_key = "MATRIX_LR=0.005 NUM_LAYERS=4"
    chosen = knob_draws.draw_setting(
        study,
        study._storage.get_trial(frozen._trial_id),
        [lr, layers],
        lambda values: f"MATRIX_LR={values['MATRIX_LR']} NUM_LAYERS={values['NUM_LAYERS']}",
        lambda key: key != stuck_key,
    )
    assert chosen is not None and chosen != {"MATRIX_LR": 0.005, "NUM_LAYERS": 4}
    assert 0.005 < chosen["MATRIX_LR"] <= 0.2 and chosen["NUM_LAYERS"] == 4
    # 5 % of the log range up from the low end
    assert math.log(chosen["MATRIX_LR"] / 0.005) == pytest.approx(0.05 * math.log(0.2 / 0.005))


def test_a_trial_whose_process_died_while_asking_it_is_failed_not_rerun_nor_counted(tmp_path):
    study = open_study(tmp_path)
    done = study.ask(PARENT, KNOBS, tier="proxy", operation="tune")
    study.tell(done, 1.2, {})
    # Another process created a trial and died before its ask wrote anything: it never ran.
    optuna.load_study(study_name="camp", storage=study.storage_url).ask()
    assert study.recover_stale(lambda n: False) == [1]
    half_asked = study.trial(1)
    assert half_asked.state == "FAIL" and half_asked.attrs.never_ran is True
    assert study.waiting_requeues() == 0
    assert [t.number for t in budget_trials(study.trials())] == [0]
