"""The interface every proposer implements (kept apart so implementations in several modules share it)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from agent.proposal import GiveUp, Proposal, ProposalContext, ProposerKind
from agent.realize import CheckProgram


class Proposer(ABC):
    """Turns a parent program and its context into a :class:`Proposal`, or gives up with a reason."""

    name: ProposerKind

    @abstractmethod
    def propose(self, context: ProposalContext, check_program: CheckProgram) -> Proposal | GiveUp:
        """A checked proposal for ``context``, or :class:`GiveUp` when no valid one came.

        ``check_program(entry_source)`` returns the program's knob names or raises ValueError with a
        precise message (the controller wraps the sandbox's static checks in it). A bad reply is a
        :class:`GiveUp`, never an exception; faults of the harness raise
        :class:`agent.errors.AgentError` subclasses (e.g. :class:`agent.errors.LLMUnavailable`).
        """
