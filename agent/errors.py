"""Errors of the agent package.

Two kinds, kept apart on purpose:

* faults of the harness (the LLM endpoint is down, the key is missing, the model name is wrong): they
  raise an :class:`AgentError` (an :class:`autogolf.errors.GolfError`, so the command line prints its
  message and ``hint`` without a traceback) and are never a verdict on a proposal;
* a reply that cannot be used (no edit, no match, syntax error, ...): :class:`ProposalError`, caught
  inside the agent and turned into a repair turn or a :class:`agent.proposal.GiveUp`.
"""

from __future__ import annotations

from autogolf.errors import GolfError


class AgentError(GolfError, RuntimeError):
    """Base of the agent's harness faults, in autogolf's one error family (``message`` and ``hint``)."""


class LLMUnavailable(AgentError):
    """The endpoint could not answer: transient failures outlasted the attempts, or it refused the request.

    A fault of the harness (network, server, quota, configuration), not of any proposal.
    """


class LLMRejected(LLMUnavailable):
    """The endpoint refused the request in a way retrying cannot fix (401, 403, 404 model not found, 400)."""


class AgentConfigError(AgentError, ValueError):
    """The agent's settings cannot work as given (for example the API key variable is unset)."""


class ProposerExhausted(AgentError):
    """A finite proposer (replay) has no proposals left; the controller should stop asking it."""


class ProposalError(ValueError):
    """One reply could not become a proposal. The message is written for the model: it is sent back
    verbatim in the repair turn, so it says exactly what was wrong and where."""
