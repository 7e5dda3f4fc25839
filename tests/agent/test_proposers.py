"""The offline proposers, and the contract every proposer keeps."""

from __future__ import annotations

import json

import pytest

from agent.errors import AgentConfigError, ProposerExhausted
from agent.proposal import GiveUp, Proposal, ProposerKind
from agent.proposers import KnobsProposer, Proposer, ReplayProposer
from tests.agent.conftest import check_program
from tests.agent.fake_llm import completion
from tests.agent.replies import CLEAN_REPLY, CLEAN_RESULT, GOOD_FIX, GOOD_FIX_RESULT, reply_with


def write_jsonl(path, *entries) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")


def test_replay_goes_through_the_real_parse_and_apply_path(tmp_path, context):
    path = tmp_path / "replay.jsonl"
    write_jsonl(path, {"reply": CLEAN_REPLY, "knobs": {"WIDTH_MULT": "2"}})
    result = ReplayProposer(path).propose(context, check_program)
    assert isinstance(result, Proposal)
    assert result.files == {"train_gpt.py": CLEAN_RESULT} and result.new_knobs == ("WIDTH_MULT",)
    assert result.proposer is ProposerKind.REPLAY
    assert result.knob_values == {"WIDTH_MULT": "2"}
    assert result.usage.prompt_tokens == 0


@pytest.mark.parametrize("key, value", [("parent", 4), ("hypothesis_id", "h-1")])
def test_a_replay_line_naming_its_parent_or_hypothesis_is_refused_not_ignored(tmp_path, key, value):
    path = tmp_path / "replay.jsonl"
    write_jsonl(path, {"reply": GOOD_FIX}, {"reply": CLEAN_REPLY, key: value})
    with pytest.raises(AgentConfigError, match=rf"replay\.jsonl:2: key '{key}' is not supported") as info:
        ReplayProposer(path)
    assert info.value.hint.startswith("remove it")


def test_replay_line_with_repair_turns_uses_the_first_that_works(tmp_path, context):
    path = tmp_path / "replay.jsonl"
    write_jsonl(path, {"replies": [reply_with("    return 0.0\n", "    return 1.0\n"), GOOD_FIX]})
    result = ReplayProposer(path).propose(context, check_program)
    assert isinstance(result, Proposal) and result.turns == 2
    assert result.files == {"train_gpt.py": GOOD_FIX_RESULT}


def test_failed_replay_reply_gives_up_with_the_reason(tmp_path, context):
    path = tmp_path / "replay.jsonl"
    bad = {"reply": reply_with("nothing like this\n", "x\n")}
    write_jsonl(path, bad, bad)
    proposer = ReplayProposer(path)
    for number in (1, 2):
        result = proposer.propose(context, check_program)
        assert isinstance(result, GiveUp)
        assert f"replay entry {number} of {path}:" in result.reason
        assert "does not match any part of train_gpt.py" in result.reason


def test_replay_cursor_survives_a_restart_and_exhaustion_raises(tmp_path, context):
    path, cursor = tmp_path / "replay.jsonl", tmp_path / "replay.cursor"
    write_jsonl(path, {"reply": GOOD_FIX}, {"hypothesis": "Lower the LR", "knobs": {"MATRIX_LR": "0.03"}})
    first = ReplayProposer(path, cursor_path=cursor)
    assert first.position == 0 and first.remaining == 2
    assert first.propose(context, check_program).files == {"train_gpt.py": GOOD_FIX_RESULT}
    assert cursor.read_text().strip() == "1"

    resumed = ReplayProposer(path, cursor_path=cursor)
    assert resumed.position == 1 and resumed.remaining == 1
    knob_only = resumed.propose(context, check_program)
    assert isinstance(knob_only, Proposal)
    assert (knob_only.files, knob_only.knob_values) == ({}, {"MATRIX_LR": "0.03"})
    assert resumed.remaining == 0
    with pytest.raises(ProposerExhausted, match="used up"):
        resumed.propose(context, check_program)


def test_bad_replay_line_is_named_at_load(tmp_path):
    path = tmp_path / "replay.jsonl"
    path.write_text('{"reply": "ok"}\n\n{"rply": "typo"}\n', encoding="utf-8")
    with pytest.raises(AgentConfigError, match=r"replay.jsonl:3: not a valid replay line"):
        ReplayProposer(path)


def test_knobs_proposer_changes_no_code(context):
    result = KnobsProposer().propose(context, check_program)
    assert isinstance(result, Proposal)
    assert (result.files, result.proposer, result.edits) == ({}, "knobs", ())


@pytest.fixture(params=["llm", "replay", "knobs"])
def any_proposer(request, tmp_path, llm_server, make_proposer) -> Proposer:
    if request.param == "llm":
        llm_server.add(completion(GOOD_FIX))
        return make_proposer()
    if request.param == "replay":
        write_jsonl(tmp_path / "r.jsonl", {"reply": GOOD_FIX})
        return ReplayProposer(tmp_path / "r.jsonl")
    return KnobsProposer()


def test_every_proposer_returns_a_proposal_whose_files_compile(any_proposer, context):
    result = any_proposer.propose(context, check_program)
    assert isinstance(result, Proposal)
    assert set(result.files) <= set(context.allowed_files)
    for path, text in result.files.items():
        compile(text, path, "exec")
        assert text != context.files[path]
    assert result.proposer in ("llm", "replay", "knobs")
