"""Replies in the styles of real model families, through LLMProposer and the real openai client."""

from __future__ import annotations

from agent.ledger import Ledger
from agent.prompt import PromptTemplates
from agent.proposal import GiveUp, Proposal
from tests.agent import model_replies as replies
from tests.agent.conftest import check_program
from tests.agent.fake_llm import completion
from tests.agent.replies import CLEAN_REPLY, CLEAN_RESULT

CUT_OFF_ANSWER = (
    "Your reply was cut off at the output token limit (8192 tokens) before it was complete, so nothing "
    "of it was used: part of a change cannot be trusted. Resend a shorter, complete answer: brief "
    "reasoning if any, a rationale of a few sentences, and SEARCH blocks that quote only the lines "
    "that change plus a little context."
)
CUT_OFF_REASONING = CUT_OFF_ANSWER.replace(
    "before it was complete", "while still reasoning, before any answer"
)
ONLY_REASONING = (
    "The reply holds only reasoning (a <think> block) and no answer after it: the answer never came, "
    "probably because the reasoning used up the output. Think briefly, then give the answer itself: "
    "<hypothesis>, <rationale> and the edits, outside any <think> block."
)


def repair_message(request) -> str:
    assert request.messages[-1]["role"] == "user"
    return request.messages[-1]["content"]


def repair_for(error: str) -> str:
    """The whole repair turn the agent sends for ``error``."""
    return PromptTemplates().render("repair", error=error)


def propose_one(llm_server, make_proposer, context, reply: str) -> Proposal:
    llm_server.add(completion(reply))
    result = make_proposer().propose(context, check_program)
    assert isinstance(result, Proposal), result
    assert len(llm_server.requests) == 1 and result.turns == 1  # taken as it came, no repair turn
    return result


# ------------------------------------------------------------------------------------ tabs


def test_tab_indented_blocks_match_a_space_indented_file_and_replace_takes_its_indent(
    llm_server, make_proposer, context
):
    result = propose_one(llm_server, make_proposer, context, replies.QWEN_TABS)
    assert result.files == {"train_gpt.py": replies.QWEN_TABS_RESULT}
    assert "\t" not in result.files["train_gpt.py"]


def test_tabbed_search_that_misquotes_a_line_says_what_was_allowed_then_is_repaired(
    llm_server, make_proposer, context
):
    llm_server.add(completion(replies.QWEN_TABS_MISQUOTED), completion(replies.QWEN_TABS))
    result = make_proposer().propose(context, check_program)

    assert isinstance(result, Proposal) and result.turns == 2
    assert result.files == {"train_gpt.py": replies.QWEN_TABS_RESULT}
    message = repair_message(llm_server.requests[1])
    assert replies.QWEN_TABS_MISQUOTED_ERROR in message
    assert "ignoring whitespace" not in message


# -------------------------------------------------------------------------------- Markdown


def test_markdown_headings_give_the_hypothesis_and_the_rationale(llm_server, make_proposer, context):
    result = propose_one(llm_server, make_proposer, context, replies.GPT41_HEADINGS)
    assert result.hypothesis == replies.GPT41_HYPOTHESIS
    assert result.rationale == replies.GPT41_RATIONALE
    assert result.files == {"train_gpt.py": replies.GPT41_RESULT}


def test_bold_labels_give_the_hypothesis_and_the_rationale(llm_server, make_proposer, context):
    result = propose_one(llm_server, make_proposer, context, replies.O3_BOLD)
    assert (result.hypothesis, result.rationale) == (replies.O3_HYPOTHESIS, replies.O3_RATIONALE)
    assert result.files == {"train_gpt.py": replies.O3_RESULT}


def test_plain_labels_give_the_hypothesis_and_the_rationale(llm_server, make_proposer, context):
    result = propose_one(llm_server, make_proposer, context, replies.LLAMA_PLAIN)
    assert result.hypothesis == "Warm the model up with one extra layer at train time."
    assert result.rationale == "A deeper model fits better; the default of 4 layers is small for the budget."
    assert result.files == {"train_gpt.py": replies.LLAMA_PLAIN_RESULT}


# --------------------------------------------------------------------------------- elision


def test_comment_elision_keeps_the_elided_lines(llm_server, make_proposer, context):
    result = propose_one(llm_server, make_proposer, context, replies.CLAUDE_ELIDED)
    assert result.files == {"train_gpt.py": replies.CLAUDE_ELIDED_RESULT}


def test_two_bare_elisions_keep_both_stretches(llm_server, make_proposer, context):
    result = propose_one(llm_server, make_proposer, context, replies.GPT41_TWO_GAPS)
    assert result.files == {"train_gpt.py": replies.GPT41_TWO_GAPS_RESULT}


def test_elision_missing_from_replace_gets_a_repair_turn_then_the_full_quote_applies(
    llm_server, make_proposer, context
):
    llm_server.add(completion(replies.O3_UNPAIRED_ELISION), completion(replies.O3_FULL))
    result = make_proposer().propose(context, check_program)

    assert isinstance(result, Proposal) and result.turns == 2
    assert result.files == {"train_gpt.py": replies.O3_FULL_RESULT}
    assert replies.O3_UNPAIRED_ELISION_ERROR in repair_message(llm_server.requests[1])


def test_elision_in_replace_alone_gets_a_repair_turn_instead_of_a_literal_comment(
    llm_server, make_proposer, context
):
    llm_server.add(
        completion(replies.CLAUDE_REPLACE_ONLY_ELISION), completion(replies.CLAUDE_REPLACE_IN_FULL)
    )
    result = make_proposer().propose(context, check_program)

    assert isinstance(result, Proposal) and result.turns == 2
    assert result.files == {"train_gpt.py": replies.CLAUDE_REPLACE_IN_FULL_RESULT}
    assert replies.CLAUDE_REPLACE_ONLY_ELISION_ERROR in repair_message(llm_server.requests[1])


# ------------------------------------------------------------------ copied line numbers


def test_repair_that_copies_the_quoted_line_numbers_is_applied_without_them(
    llm_server, make_proposer, context
):
    llm_server.add(completion(replies.LLAMA_MISQUOTED), completion(replies.LLAMA_NUMBERED))
    result = make_proposer().propose(context, check_program)

    assert isinstance(result, Proposal) and result.turns == 2
    assert result.files == {"train_gpt.py": replies.LLAMA_NUMBERED_RESULT}
    assert result.hypothesis == "Add one to every layer's output"
    second = llm_server.requests[1]
    assert second.messages[2] == {"role": "assistant", "content": replies.LLAMA_MISQUOTED}
    assert replies.LLAMA_MISQUOTED_ERROR in repair_message(second)


# ------------------------------------------------------------------------------- reasoning


def test_a_draft_edit_and_hypothesis_inside_think_are_ignored(llm_server, make_proposer, context):
    result = propose_one(llm_server, make_proposer, context, replies.R1_DRAFT_IN_THINK)
    assert result.files == {"train_gpt.py": replies.R1_RESULT}  # no "x * 4" from the draft
    assert result.hypothesis == replies.R1_HYPOTHESIS
    assert result.rationale == (
        "With activations doubling per layer the effective step is large; a lower rate should help."
    )
    assert len(result.edits) == 2


def test_reasoning_opened_by_the_chat_template_ends_at_its_closing_tag(llm_server, make_proposer, context):
    result = propose_one(llm_server, make_proposer, context, replies.QWEN3_OPENED_BY_TEMPLATE)
    assert result.files == {"train_gpt.py": replies.QWEN3_RESULT}  # no "x * 3" from the reasoning
    assert result.hypothesis == replies.QWEN3_HYPOTHESIS
    assert result.rationale == "A constant evaluation gives no signal."


def test_reasoning_cut_off_before_any_answer_gets_a_repair_turn_saying_so(llm_server, make_proposer, context):
    llm_server.add(replies.cut_off(replies.R1_THINK_ONLY_CUT), completion(replies.R1_DRAFT_IN_THINK))
    ledger = Ledger(None)
    result = make_proposer(ledger).propose(context, check_program)

    assert isinstance(result, Proposal) and result.turns == 2
    assert result.files == {"train_gpt.py": replies.R1_RESULT}
    assert repair_message(llm_server.requests[1]) == repair_for(CUT_OFF_REASONING)
    assert [entry.detail for entry in ledger.entries] == ["length", ""]


def test_reply_that_is_only_a_closed_think_block_gets_a_repair_turn_saying_so(
    llm_server, make_proposer, context
):
    llm_server.add(completion(replies.R1_THINK_ONLY_CLOSED), completion(replies.R1_DRAFT_IN_THINK))
    result = make_proposer().propose(context, check_program)

    assert isinstance(result, Proposal) and result.turns == 2
    assert result.hypothesis == replies.R1_HYPOTHESIS
    assert repair_message(llm_server.requests[1]) == repair_for(ONLY_REASONING)


# ------------------------------------------------------------------------- cut-off replies


def test_cut_off_reply_that_parses_is_refused_and_the_complete_resend_taken(
    llm_server, make_proposer, context
):
    llm_server.add(replies.cut_off(replies.GPT41_CUT_AFTER_FIRST_BLOCK), completion(CLEAN_REPLY))
    result = make_proposer().propose(context, check_program)

    assert isinstance(result, Proposal) and result.turns == 2
    assert result.files == {"train_gpt.py": CLEAN_RESULT}
    second = llm_server.requests[1]
    assert second.messages[2] == {"role": "assistant", "content": replies.GPT41_CUT_AFTER_FIRST_BLOCK}
    assert repair_message(second) == repair_for(CUT_OFF_ANSWER)


def test_replies_cut_off_every_turn_end_in_a_give_up_that_says_why(llm_server, make_proposer, context):
    llm_server.add(*[replies.cut_off(replies.GPT41_CUT_AFTER_FIRST_BLOCK) for _ in range(2)])
    result = make_proposer(repair_turns=1).propose(context, check_program)

    assert isinstance(result, GiveUp) and result.turns == 2
    assert result.reason == (
        f"no usable proposal after 2 turns; the last reply was rejected: {CUT_OFF_ANSWER}"
    )
