"""The steering queue (controller.search.requests): ids, persistence, locking, and consumption derived from
the study's trials; and (once the loop consumes the queue) a request flowing into a real trial."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest

from controller.search.requests import (
    RequestError,
    RequestKind,
    add_confirm,
    add_hypothesis,
    add_knobs,
    add_seed,
    hypotheses_from_markdown,
    load_requests,
    outcome_of,
    pending,
    request_attrs,
    requests_path,
    trials_of,
)
from controller.store.study import TrialRecord
from controller.store.trial_attrs import TrialAttrs
from tests.controller.test_review import FAKE_TRAINER, run_campaign, write_campaign


def trial(number: int, state: str = "COMPLETE", **attrs) -> TrialRecord:
    return TrialRecord(
        number=number,
        state=state,
        value=attrs.get("val_bpb"),
        params={},
        attrs=TrialAttrs(**attrs),
        intermediate_values={},
        constraints={},
        started=datetime(2026, 1, 1),
        completed=datetime(2026, 1, 1),
    )


def test_ids_count_per_kind_and_survive_a_reload(tmp_path):
    assert add_hypothesis(tmp_path, "  use a bigram model  ") == "h-001"
    assert add_knobs(tmp_path, {"MATRIX_LR": "0.03"}, parent_trial=4) == "k-001"
    assert add_hypothesis(tmp_path, "tie embeddings", parent_trial=2) == "h-002"
    assert add_confirm(tmp_path, trial=7, seeds=3) == "c-001"
    loaded = load_requests(tmp_path)
    assert [r.id for r in loaded] == ["h-001", "k-001", "h-002", "c-001"]
    assert loaded[0].text == "use a bigram model" and loaded[0].parent_trial is None
    assert loaded[1].knob_values == {"MATRIX_LR": "0.03"} and loaded[1].parent_trial == 4
    assert (loaded[3].kind, loaded[3].trial, loaded[3].seeds) == (RequestKind.CONFIRM, 7, 3)


def test_concurrent_adds_get_distinct_ids_and_all_lines_survive(tmp_path):
    def add_five(worker: int) -> None:
        for index in range(5):
            add_hypothesis(tmp_path, f"idea {worker}.{index}")

    threads = [threading.Thread(target=add_five, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loaded = load_requests(tmp_path)
    assert sorted(r.id for r in loaded) == [f"h-{n:03d}" for n in range(1, 31)]
    assert len({r.text for r in loaded}) == 30


def test_a_request_is_pending_until_trials_carry_its_id(tmp_path):
    hyp = add_hypothesis(tmp_path, "more smoothing")
    conf = add_confirm(tmp_path, trial=3, seeds=2)
    knobs = add_knobs(tmp_path, {"SMOOTHING": "0.9"})
    trials = [trial(0), trial(5, **{"request_id": conf, "val_bpb": 1.2})]
    assert [r.id for r in pending(tmp_path, trials)] == [hyp, conf, knobs]  # oldest first
    trials.append(trial(6, "FAIL", **{"request_id": hyp, "hypothesis_id": hyp}))
    trials.append(trial(7, **{"request_id": conf, "val_bpb": 1.1}))
    assert [r.id for r in pending(tmp_path, trials)] == [knobs]
    assert [t.number for t in trials_of(conf, trials)] == [5, 7]


def test_a_trial_rerun_after_a_crash_counts_once(tmp_path):
    conf = add_confirm(tmp_path, trial=3, seeds=2)
    crashed = trial(4, "FAIL", request_id=conf)
    rerun = trial(5, "RUNNING", **{"request_id": conf, "requeued_from": 4, "original_trial": 4})
    assert [t.number for t in trials_of(conf, [crashed, rerun])] == [5]
    assert [r.id for r in pending(tmp_path, [crashed, rerun])] == [conf]


def test_request_attrs_tag_hypothesis_trials_with_both_ids(tmp_path):
    add_hypothesis(tmp_path, "an idea")
    add_knobs(tmp_path, {"SMOOTHING": "2"})
    hyp, knobs = load_requests(tmp_path)
    assert request_attrs(hyp) == TrialAttrs(request_id="h-001", hypothesis_id="h-001")
    assert request_attrs(knobs) == TrialAttrs(request_id="k-001")


def test_outcome_names_each_trial_and_what_is_left(tmp_path):
    conf = add_confirm(tmp_path, trial=3, seeds=3)
    (request,) = load_requests(tmp_path)
    made = [
        trial(8, **{"request_id": conf, "val_bpb": 1.23456}),
        trial(9, "FAIL", **{"request_id": conf, "status_reason": "crashed: CUDA OOM\ntraceback"}),
    ]
    assert outcome_of(request, []) == "queued"
    assert outcome_of(request, made) == "trial 8: 1.2346 bpb; trial 9: fail (crashed: CUDA OOM); 1 to go"


def test_bad_requests_are_refused_with_the_fix(tmp_path):
    with pytest.raises(RequestError, match="empty"):
        add_hypothesis(tmp_path, "   ")
    with pytest.raises(RequestError, match="UPPER_CASE"):
        add_knobs(tmp_path, {"matrix_lr": "0.03"})
    with pytest.raises(RequestError, match="at least one seed"):
        add_confirm(tmp_path, trial=1, seeds=0)
    with pytest.raises(RequestError, match="no such file"):
        add_seed(tmp_path, tmp_path / "missing.py")
    assert load_requests(tmp_path) == []


def test_an_unreadable_line_is_skipped_not_fatal(tmp_path):
    add_hypothesis(tmp_path, "first")
    with requests_path(tmp_path).open("a") as f:
        f.write('{"id": "h-002", "kind": "hypo')  # a crash mid-write
        f.write("\n")
    add_hypothesis(tmp_path, "second")
    assert [r.text for r in load_requests(tmp_path)] == ["first", "second"]


def program_without_knob_table() -> str:
    source = FAKE_TRAINER.read_text(encoding="utf-8").replace("KNOBS", "SETTINGS")
    assert "KNOBS" not in source
    return source


def test_seed_without_a_knob_table_is_copied_byte_for_byte(tmp_path):
    program = tmp_path / "their_train_gpt.py"
    program.write_bytes(program_without_knob_table().encode() + b"# trailing \xc3\xa9\r\n")
    request_id = add_seed(tmp_path / "run", program, title="someone's record")
    (request,) = load_requests(tmp_path / "run")
    assert request.id == request_id == "s-001" and request.knob_names == ()
    assert (tmp_path / "run" / request.program).read_bytes() == program.read_bytes()
    assert "no knob table" in request.summary()


def test_seed_with_a_malformed_knob_table_is_refused(tmp_path):
    program = tmp_path / "bad.py"
    program.write_text('KNOBS = [Knob("X", int, 1, colour="red")]\n')
    with pytest.raises(RequestError, match="unknown keyword"):
        add_seed(tmp_path, program)


def test_markdown_notes_split_at_headings():
    notes = "# Bigram model\nCount pairs.\n\n## Tie embeddings\nShare the matrix.\n"
    assert hypotheses_from_markdown(notes) == [
        "Bigram model\nCount pairs.",
        "Tie embeddings\nShare the matrix.",
    ]
    assert hypotheses_from_markdown("one idea\nover two lines\n") == ["one idea\nover two lines"]


@pytest.mark.slow
def test_a_queued_hypothesis_becomes_a_trial_that_carries_its_id(tmp_path, tiny_data):
    config = write_campaign(
        tmp_path / "camp", tiny_data, max_trials=3, operations="mutate = 0.0\ntune = 1.0\nhypothesis = 1.0"
    )
    request_id = add_hypothesis(config.run_dir, "Smooth the unigram counts more")
    run_campaign(config)
    from controller.review.views import Campaign

    made = trials_of(request_id, Campaign.open(config).trials)
    assert made and made[0].attrs.hypothesis_id == request_id
    assert pending(config.run_dir, Campaign.open(config).trials) == []


@pytest.mark.slow
def test_a_seeded_program_without_a_knob_table_runs_with_its_defaults(tmp_path, tiny_data):
    config = write_campaign(tmp_path / "camp", tiny_data, max_trials=3)
    program = tmp_path / "plain.py"
    program.write_text(program_without_knob_table(), encoding="utf-8")
    request_id = add_seed(config.run_dir, program)
    run_campaign(config)
    from controller.review.views import Campaign

    (made,) = trials_of(request_id, Campaign.open(config).trials)
    assert made.state == "COMPLETE" and made.attrs.parent_trial is None
