"""TrialAttrs: the one model of what a trial records, written and read through a real study."""

from __future__ import annotations

import optuna
import pytest
from pydantic import ValidationError

from controller.errors import StudyError
from controller.store.archive import Operation
from controller.store.study import CampaignStudy
from controller.store.trial_attrs import Discredit, TrialAttrs
from sandbox.spec import RunStatus


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture
def study(url) -> CampaignStudy:
    return CampaignStudy(url, "attrs", sampler="random", pruner="none")


def test_a_misspelt_field_is_refused_when_written():
    with pytest.raises(ValidationError, match="hypotesis"):
        TrialAttrs(hypotesis="typo")
    with pytest.raises(ValidationError, match="seed"):
        TrialAttrs(seed="not a number")


def test_only_the_fields_set_are_written_and_merging_keeps_both():
    attrs = TrialAttrs(hypothesis="h", seed=7)
    assert attrs.written() == {"hypothesis": "h", "seed": 7}
    merged = attrs.merged(TrialAttrs(seed=8, discredits=Discredit(trials=(1, 2), reason="r")))
    assert merged.written() == {"hypothesis": "h", "seed": 8, "discredits": {"trials": [1, 2], "reason": "r"}}
    assert attrs.updated(status=RunStatus.OK).written()["status"] == "ok"


def test_what_a_trial_records_reads_back_typed_from_the_study(study):
    handle = study.ask(
        None, [], {}, tier="proxy", operation=Operation.SEED, attrs=TrialAttrs(hypothesis="seed")
    )
    study.tell(handle, 1.5, {}, TrialAttrs(val_bpb=1.5, val_loss=1.0, status=RunStatus.OK, promoted=True))
    attrs = study.trial(handle.number).attrs
    assert attrs.operation is Operation.SEED and attrs.status is RunStatus.OK
    assert (attrs.hypothesis, attrs.tier, attrs.val_bpb, attrs.promoted) == ("seed", "proxy", 1.5, True)
    assert attrs.knob_values == {} and attrs.parent_trial is None
    assert attrs.requeued_from is None and attrs.gave_up is False  # unset: the defaults


def test_an_attribute_another_tool_set_is_ignored_but_a_wrong_type_is_named(study, url):
    handle = study.ask(None, [], {}, tier="proxy", operation="seed")
    storage = optuna.storages.RDBStorage(url)  # another program writing the same study
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name("attrs"), handle.number
    )
    storage.set_trial_user_attr(trial_id, "dashboard_colour", "blue")  # not ours to read
    assert study.trial(handle.number).attrs.tier == "proxy"
    storage.set_trial_user_attr(trial_id, "lost_runs", "many")
    with pytest.raises(StudyError, match=rf"trial {handle.number} .*lost_runs"):
        study.trial(handle.number)
