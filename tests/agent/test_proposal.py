"""The closed sets the agent and the controller exchange are enums: a value outside them fails loudly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.proposal import (
    Operation,
    Outcome,
    OutcomeStatus,
    ParentResult,
    Proposal,
    ProposalContext,
    ProposerKind,
)
from sandbox.spec import RunStatus
from tests.agent.conftest import PARENT


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: ProposalContext(files={"train_gpt.py": PARENT}, operation="tweak"), "operation"),
        (lambda: Proposal(hypothesis="h", proposer="gpt"), "proposer"),
        (lambda: Outcome(hypothesis="h", status="exploded"), "status"),
        (lambda: ParentResult(status="exploded"), "status"),
    ],
)
def test_a_value_outside_a_closed_set_is_refused_naming_the_field(build, field):
    with pytest.raises(ValidationError, match=rf"(?s){field}\n.*Input should be"):
        build()


def test_the_strings_the_controller_sends_become_members():
    context = ProposalContext(files={"train_gpt.py": PARENT}, operation="hypothesis")
    assert context.operation is Operation.HYPOTHESIS
    assert Outcome(hypothesis="h", status="gave_up").status is OutcomeStatus.GAVE_UP
    assert Proposal(hypothesis="h", proposer="enqueue").proposer is ProposerKind.ENQUEUE
    assert ProposalContext(files={"train_gpt.py": PARENT}).operation is Operation.MUTATE


def test_every_run_status_can_be_told_to_the_agent():
    # The controller passes str(candidate.status) into Outcome and ParentResult; a new RunStatus that
    # OutcomeStatus lacks would make building the agent's context fail.
    assert {s.value for s in RunStatus} <= {s.value for s in OutcomeStatus}


def test_the_controller_uses_the_agents_operation():
    from controller.store.archive import Operation as ArchiveOperation

    assert ArchiveOperation is Operation
