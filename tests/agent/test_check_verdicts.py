"""The caller's program check (the controller's CPU smoke run) can refuse a program with a message for
the model: the agent sends it back verbatim as a repair turn, not wrapped as a knob-table error."""

from __future__ import annotations

from agent.errors import ProposalError
from agent.proposal import Proposal
from controller.search.inert import inert_message
from tests.agent.conftest import check_program
from tests.agent.fake_llm import completion
from tests.agent.replies import GOOD_FIX, reply_with


def test_an_inert_verdict_is_a_repair_turn_with_the_message_verbatim(llm_server, make_proposer, context):
    dead = reply_with(
        "            x = x * 2\n", "            x = x * 2\n            y = x\n", hypothesis="Keep a copy"
    )
    llm_server.add(completion(dead))
    llm_server.add(completion(GOOD_FIX))
    message = inert_message({"ITERATIONS": "3"})

    def controller_check(source: str) -> tuple[str, ...]:
        if "y = x" in source:
            raise ProposalError(message)
        return check_program(source)

    result = make_proposer().propose(context, controller_check)
    assert isinstance(result, Proposal) and result.turns == 2
    repair = llm_server.requests[1].messages[-1]["content"]
    assert message in repair and "knob table" not in repair
    assert "3 training steps" in message
