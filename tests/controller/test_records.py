"""rebuild_archive: the archive written into the study's user attributes comes back as it was."""

from __future__ import annotations

import json

import pytest

from controller.store.archive import Candidate, Operation
from controller.store.records import (
    candidate_attrs,
    rebuild_archive,
    result_note,
)
from controller.store.study import CampaignStudy
from controller.store.trial_attrs import TrialAttrs
from sandbox.spec import RunResult, RunStatus


@pytest.fixture
def study(tmp_path) -> CampaignStudy:
    return CampaignStudy(f"sqlite:///{tmp_path / 'study.db'}", "records", sampler="random", pruner="none")


def candidate(trial: int, parent: int | None, bpb: float | None, **fields) -> Candidate:
    defaults = dict(
        commit=f"{trial:040x}",
        parent_trial=parent,
        tier="proxy",
        status=RunStatus.OK if bpb is not None else RunStatus.CRASHED,
        seed_bpbs=(bpb,) if bpb is not None else (),
        seed_val_losses=(bpb * 0.7,) if bpb is not None else (),
        artifact_bytes=1000 + trial,
        train_seconds=1.5 + trial,
        hypothesis=f"idea {trial}",
        operation=Operation.SEED if parent is None else Operation.MUTATE,
        knob_values={"SMOOTHING": str(0.1 * (trial + 1))},
    )
    return Candidate(trial=trial, **{**defaults, **fields})


def record(study: CampaignStudy, value: float | None, attrs: dict) -> int:
    handle = study.ask(None, [], {}, tier="proxy", operation=attrs.get("operation", "mutate"))
    if value is None:
        study.fail(handle, "crashed", TrialAttrs(**attrs))
    else:
        study.tell(handle, value, {"artifact_bytes": -1.0}, TrialAttrs(**attrs))
    return handle.number


def test_rebuild_round_trips_candidates_seeds_and_promotions(study):
    seed = candidate(0, None, 1.50)
    child = candidate(1, 0, 1.40, suspicious="", feasible=True)
    crashed = candidate(2, 1, None)
    over = candidate(3, 1, None, status=RunStatus.OVER_SIZE, feasible=False, val_bpb=1.30)
    record(study, 1.50, {"candidate": candidate_attrs(seed), "promoted": True})
    record(study, 1.40, {"candidate": candidate_attrs(child)})
    record(study, None, {"candidate": candidate_attrs(crashed)})
    record(study, 1.30, {"candidate": candidate_attrs(over)})
    # Confirm runs: one more seed for the seed program, one for the child; the last promotes it.
    record(study, 1.52, {"confirm_of": 0, "val_bpb": 1.52, "val_loss": 1.06, "operation": "confirm"})
    record(
        study,
        1.38,
        {"confirm_of": 1, "val_bpb": 1.38, "val_loss": 0.97, "promotes": 1, "operation": "confirm"},
    )
    running = study.ask(None, [], {}, tier="proxy", operation="mutate")  # a crash left it running
    study.set_attrs(running, TrialAttrs(candidate=candidate_attrs(candidate(6, 1, 1.0))))

    archive = rebuild_archive(study.trials())

    assert sorted(c.trial for c in archive) == [0, 1, 2, 3]
    assert archive.get(2) == crashed and archive.get(3) == over
    assert archive.get(3).val_bpb == 1.30 and not archive.get(3).eligible
    rebuilt_seed, rebuilt_child = archive.get(0), archive.get(1)
    assert rebuilt_seed.seed_bpbs == (1.50, 1.52)
    assert rebuilt_seed.seed_val_losses == (pytest.approx(1.05), 1.06)
    assert rebuilt_seed.val_bpb == pytest.approx(1.51)
    assert rebuilt_seed.confirmed
    assert rebuilt_child.seed_bpbs == (1.40, 1.38) and rebuilt_child.confirmed
    assert rebuilt_child.knob_values == {"SMOOTHING": "0.2"}
    for field in (
        "commit",
        "parent_trial",
        "tier",
        "status",
        "artifact_bytes",
        "train_seconds",
        "hypothesis",
    ):
        assert getattr(rebuilt_child, field) == getattr(child, field), field
    assert rebuilt_child.operation is Operation.MUTATE and rebuilt_seed.operation is Operation.SEED
    assert archive.best("proxy").trial == 1


def test_failed_confirm_run_and_confirm_of_an_unknown_trial_add_no_seed(study):
    record(study, 1.50, {"candidate": candidate_attrs(candidate(0, None, 1.50)), "promoted": True})
    record(study, None, {"confirm_of": 0, "operation": "confirm"})  # the confirm run crashed
    record(study, 1.45, {"confirm_of": 9, "val_bpb": 1.45, "val_loss": 1.0, "operation": "confirm"})

    archive = rebuild_archive(study.trials())

    assert [c.trial for c in archive] == [0]
    assert archive.get(0).seed_bpbs == (1.50,)


def test_rebuild_replays_in_trial_order_so_a_confirm_seed_lands_on_its_candidate(study):
    """Records given out of order (as a second worker's study read may be) rebuild the same archive."""
    record(study, 1.50, {"candidate": candidate_attrs(candidate(0, None, 1.50))})
    record(study, 1.55, {"confirm_of": 0, "val_bpb": 1.55, "val_loss": 1.1, "operation": "confirm"})

    forward = rebuild_archive(study.trials())
    backward = rebuild_archive(tuple(reversed(study.trials())))

    assert forward.get(0).seed_bpbs == backward.get(0).seed_bpbs == (1.50, 1.55)


def test_result_note_holds_the_full_run_result_and_the_controller_fields():
    result = RunResult(status=RunStatus.OK, val_bpb=1.234, val_loss=0.9, reason="")
    note = json.loads(result_note(result, {"trial": 7, "seed": 1337}))
    assert RunResult.model_validate(note["result"]) == result
    assert note["trial"] == 7 and note["seed"] == 1337


def test_every_stored_field_of_a_candidate_survives_the_study():
    """The stored form is derived from the dataclass, so no field can be left out by hand; only
    ``confirmed`` is not stored (the promotion marks decide it when the archive is rebuilt)."""
    import dataclasses

    from controller.store.records import candidate_from_attrs

    full = Candidate(
        trial=7,
        commit="c" * 40,
        parent_trial=3,
        tier="full",
        status=RunStatus.OK,
        seed_bpbs=(1.25, 1.27),
        seed_val_losses=(2.1, 2.2),
        artifact_bytes=15_000_000,
        train_seconds=598.5,
        feasible=False,
        hypothesis="wider MLP",
        operation=Operation.HYPOTHESIS,
        confirmed=True,
        suspicious="a gain of 0.3 bpb over the parent",
        verified=True,
        discredited=True,
        knob_values={"MLP_MULT": "4"},
    )
    stored = candidate_attrs(full)
    assert "confirmed" not in stored
    assert json.loads(json.dumps(stored)) == stored  # what the study keeps is plain JSON
    back = candidate_from_attrs(stored, confirmed=True)
    assert back == full and dict(back.knob_values) == {"MLP_MULT": "4"}
    assert back.val_bpb == pytest.approx(1.26)
    for f in dataclasses.fields(Candidate):
        assert getattr(back, f.name) == getattr(full, f.name), f.name
    assert candidate_from_attrs(stored).confirmed is False
