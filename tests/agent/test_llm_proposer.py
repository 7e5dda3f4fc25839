"""The LLM proposer end to end: the real openai client against a scripted local chat server."""

from __future__ import annotations

import time

import pytest

from agent.errors import LLMRejected, LLMUnavailable
from agent.hashing import normalized_source_hash
from agent.ledger import Ledger
from agent.proposal import EditKind, GiveUp, Operation, Proposal, ProposerKind
from tests.agent.conftest import PARENT, check_program
from tests.agent.fake_llm import Scripted, completion, error
from tests.agent.replies import CLEAN_REPLY, CLEAN_RESULT, GOOD_FIX, GOOD_FIX_RESULT, reply_with


def repair_message(request) -> str:
    """The repair turn the agent sent: the last user message of a follow-up request."""
    assert request.messages[-1]["role"] == "user"
    return request.messages[-1]["content"]


def test_clean_reply_becomes_a_proposal_with_new_knobs_and_ledger_cost(llm_server, make_proposer, context):
    llm_server.add(completion(CLEAN_REPLY, prompt_tokens=1200, completion_tokens=300))
    ledger = Ledger(None)
    result = make_proposer(ledger).propose(context, check_program)

    assert isinstance(result, Proposal)
    assert result.files == {"train_gpt.py": CLEAN_RESULT}
    assert result.new_knobs == ("WIDTH_MULT",)
    assert result.hypothesis == "Triple the activation in forward and expose a width knob"
    assert result.rationale == "A larger multiplier should help; WIDTH_MULT lets the tuner decide."
    assert [e.kind for e in result.edits] == [EditKind.SEARCH_REPLACE] * 2
    assert result.turns == 1 and result.proposer == "llm"
    # 1200 * $2/M + 300 * $8/M
    assert result.usage.cost_usd == pytest.approx(0.0024 + 0.0024)
    assert [(e.outcome, e.prompt_tokens, e.completion_tokens) for e in ledger.entries] == [("ok", 1200, 300)]
    assert ledger.total_cost_usd == pytest.approx(0.0048)

    (request,) = llm_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "test-model"
    assert request.body["max_tokens"] == 8192
    assert request.headers["authorization"] == "Bearer test-key"
    assert [m["role"] for m in request.messages] == ["system", "user"]
    assert PARENT.rstrip() in request.messages[1]["content"]  # the whole program, untrimmed


def test_reply_wrapped_in_fences_and_chatter_with_crlf_is_accepted(llm_server, make_proposer, context):
    wrapped = (
        "Sure! Here is my proposal.\r\n```\r\n" + CLEAN_REPLY.replace("\n", "\r\n") + "```\r\nGood luck!"
    )
    llm_server.add(completion(wrapped))
    result = make_proposer().propose(context, check_program)
    assert isinstance(result, Proposal)
    assert result.files == {"train_gpt.py": CLEAN_RESULT}


def test_search_with_wrong_indentation_is_matched_and_replace_reindented(llm_server, make_proposer, context):
    dedented = reply_with(
        "def forward(self, x):\n    for _ in range(self.layers):\n        x = x * 2\n",
        "def forward(self, x):\n    for _ in range(self.layers):\n        x = x * 2 + 1\n    x = -x\n",
    )
    llm_server.add(completion(dedented))
    result = make_proposer().propose(context, check_program)
    assert isinstance(result, Proposal)
    expected = PARENT.replace(
        "            x = x * 2\n        return x\n",
        "            x = x * 2 + 1\n        x = -x\n        return x\n",
    )
    assert result.files["train_gpt.py"] == expected
    assert len(llm_server.requests) == 1  # no repair turn was needed


def test_search_matching_twice_gets_a_repair_turn_naming_both_lines(llm_server, make_proposer, context):
    llm_server.add(completion(reply_with("    return 0.0\n", "    return 1.0\n")), completion(GOOD_FIX))
    result = make_proposer().propose(context, check_program)

    assert isinstance(result, Proposal)
    assert result.turns == 2
    assert result.files == {"train_gpt.py": GOOD_FIX_RESULT}
    second = llm_server.requests[1]
    assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "user"]
    assert second.messages[2]["content"] == reply_with("    return 0.0\n", "    return 1.0\n")
    message = repair_message(second)
    assert message.startswith("Your reply could not be used:")
    assert (
        "Edit block 1 of 1 (train_gpt.py): the SEARCH text matches 2 places (starting at lines 27, 31); "
        "it must match exactly one." in message
    )


def test_search_that_never_matches_repairs_then_gives_up_quoting_closest_lines(
    llm_server, make_proposer, context
):
    bad = reply_with("    def forward(self, y):\n        for _ in range(self.depth):\n", "    pass\n")
    llm_server.add(*[completion(bad, prompt_tokens=10, completion_tokens=5) for _ in range(3)])
    ledger = Ledger(None)
    result = make_proposer(ledger, repair_turns=2).propose(context, check_program)

    assert isinstance(result, GiveUp)
    assert result.turns == 3
    assert len(llm_server.requests) == 3
    assert result.reason.startswith("no usable proposal after 3 turns; the last reply was rejected:")
    assert "the SEARCH text does not match any part of train_gpt.py" in result.reason
    closest = "20 |     def forward(self, x):\n21 |         for _ in range(self.layers):"
    for request in llm_server.requests[1:]:
        assert closest in repair_message(request)
    assert result.transcript == (bad, bad, bad)
    assert result.usage.prompt_tokens == 30 and result.usage.completion_tokens == 15
    assert [e.purpose for e in ledger.entries] == ["propose", "repair", "repair"]
    assert ledger.prompt_tokens == 30


def test_syntax_error_is_reported_with_its_line_then_fixed(llm_server, make_proposer, context):
    broken = reply_with("            x = x * 2\n", "            x = x *\n")
    llm_server.add(completion(broken), completion(GOOD_FIX))
    result = make_proposer().propose(context, check_program)

    assert isinstance(result, Proposal)
    assert result.files == {"train_gpt.py": GOOD_FIX_RESULT}
    message = repair_message(llm_server.requests[1])
    assert "After the edits train_gpt.py does not compile: SyntaxError at line 22" in message
    assert "    22 |             x = x *" in message


def test_edit_to_a_forbidden_file_is_refused_and_the_parent_untouched(llm_server, make_proposer, context):
    forbidden = reply_with("", "print('pwned')\n", path="sandbox/scoring.py")
    llm_server.add(completion(forbidden), completion(forbidden))
    result = make_proposer(repair_turns=1).propose(context, check_program)

    assert isinstance(result, GiveUp)
    message = repair_message(llm_server.requests[1])
    assert (
        "The reply edits sandbox/scoring.py, which may not be changed. Only these files may be edited: "
        "train_gpt.py." in message
    )
    assert "sandbox/scoring.py" in result.reason


def test_reply_without_any_edit_asks_for_one(llm_server, make_proposer, context):
    llm_server.add(
        completion("<hypothesis>Use more layers</hypothesis>\n<rationale>Depth helps.</rationale>"),
        completion(GOOD_FIX),
    )
    result = make_proposer().propose(context, check_program)
    assert isinstance(result, Proposal) and result.turns == 2
    assert "The reply has no edit." in repair_message(llm_server.requests[1])


def test_edit_that_breaks_the_knob_table_is_repaired(llm_server, make_proposer, context):
    breaks_table = reply_with(
        '    Knob("NUM_LAYERS", int, 4, low=1, high=8),\n',
        '    Knob("NUM_LAYERS", int, 2 * 2, low=1, high=8),\n',
    )
    llm_server.add(completion(breaks_table), completion(GOOD_FIX))
    result = make_proposer().propose(context, check_program)
    assert isinstance(result, Proposal)
    message = repair_message(llm_server.requests[1])
    assert "After the edits the knob table of train_gpt.py no longer parses:" in message
    assert "default must be a literal, not '2 * 2'" in message


def test_reply_identical_to_parent_or_to_a_tried_candidate_is_refused(llm_server, make_proposer, context):
    comment_only = reply_with("            x = x * 2\n", "            x = x * 2  # same thing\n")
    llm_server.add(completion(comment_only), completion(GOOD_FIX))
    tried = context.model_copy(
        update={"known_source_hashes": frozenset({normalized_source_hash(GOOD_FIX_RESULT)})}
    )
    result = make_proposer(repair_turns=1).propose(tried, check_program)

    assert isinstance(result, GiveUp)
    assert "identical to the parent (it differs only in comments" in repair_message(llm_server.requests[1])
    assert "identical to a candidate that was already tried" in result.reason


def test_unified_diff_reply_is_applied_with_git(llm_server, make_proposer, context):
    diff_reply = (
        "<hypothesis>Multiply by three</hypothesis>\n<rationale>r</rationale>\n```diff\n"
        "--- a/train_gpt.py\n+++ b/train_gpt.py\n@@ -20,4 +20,4 @@ class Model:\n"
        "     def forward(self, x):\n         for _ in range(self.layers):\n"
        "-            x = x * 2\n+            x = x * 3\n         return x\n```\n"
    )
    llm_server.add(completion(diff_reply))
    result = make_proposer().propose(context, check_program)
    assert isinstance(result, Proposal)
    assert result.edits[0].kind is EditKind.UNIFIED_DIFF
    assert result.files == {"train_gpt.py": GOOD_FIX_RESULT}


def test_rate_limit_is_retried_after_backoff_then_succeeds(llm_server, make_proposer, context):
    llm_server.add(error(429, "slow down", **{"Retry-After": "0"}), completion(GOOD_FIX))
    ledger = Ledger(None)
    result = make_proposer(ledger).propose(context, check_program)

    assert isinstance(result, Proposal)
    assert len(llm_server.requests) == 2
    assert [(e.outcome, e.attempt) for e in ledger.entries] == [("rate_limited", 1), ("ok", 2)]
    assert "HTTP 429: slow down" in ledger.entries[0].detail
    assert ledger.prompt_tokens == 100  # the failed attempt used no tokens


def test_malformed_json_body_is_retried_as_transient(llm_server, make_proposer, context):
    llm_server.add(Scripted(body='{"choices": [ not json'), completion(GOOD_FIX))
    ledger = Ledger(None)
    result = make_proposer(ledger).propose(context, check_program)
    assert isinstance(result, Proposal)
    assert [e.outcome for e in ledger.entries] == ["bad_response", "ok"]


def test_server_errors_outlasting_the_attempts_raise_llm_unavailable(llm_server, make_proposer, context):
    llm_server.add(*[error(503, "overloaded") for _ in range(3)])
    ledger = Ledger(None)
    with pytest.raises(
        LLMUnavailable, match=r"did not answer after 3 attempts.*HTTP 503: overloaded"
    ) as info:
        make_proposer(ledger, max_attempts=3).propose(context, check_program)
    assert "request_timeout_seconds" in info.value.hint
    assert [e.outcome for e in ledger.entries] == ["server_error"] * 3


def test_unknown_model_is_rejected_at_once_without_retrying(llm_server, make_proposer, context):
    llm_server.add(error(404, "model 'test-model' not found"), completion(GOOD_FIX))
    with pytest.raises(LLMRejected, match="model 'test-model' not found") as info:
        make_proposer(max_attempts=5).propose(context, check_program)
    assert len(llm_server.requests) == 1
    assert "AUTOGOLF_TEST_KEY" in info.value.hint and llm_server.base_url in info.value.hint


@pytest.mark.slow
def test_stalled_server_times_out_and_raises_within_seconds(llm_server, make_proposer, context):
    llm_server.add(Scripted(delay_seconds=30), Scripted(delay_seconds=30))
    ledger = Ledger(None)
    started = time.monotonic()
    with pytest.raises(LLMUnavailable, match="did not answer after 2 attempts; the last failure was timeout"):
        make_proposer(ledger, request_timeout_seconds=1.0, max_attempts=2).propose(context, check_program)
    elapsed = time.monotonic() - started
    assert elapsed < 4.0
    assert [e.outcome for e in ledger.entries] == ["timeout", "timeout"]
    assert all(e.latency_seconds >= 0.9 for e in ledger.entries)


def test_hypothesis_operation_puts_the_human_idea_in_the_prompt(llm_server, make_proposer, context):
    llm_server.add(completion(GOOD_FIX))
    asked = context.model_copy(
        update={"operation": Operation.HYPOTHESIS, "human_hypothesis": "Deeper is better"}
    )
    result = make_proposer().propose(asked, check_program)
    assert isinstance(result, Proposal) and result.proposer is ProposerKind.HYPOTHESIS
    assert (
        "A person asked you to test this hypothesis:\n\n    Deeper is better"
        in (llm_server.requests[0].messages[1]["content"])
    )
