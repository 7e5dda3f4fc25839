"""Proposers: the small interface the controller asks for changes, and its three implementations.

* :class:`LLMProposer` asks a chat model, repairing bad replies in the same conversation;
* :class:`ReplayProposer` reads replies from a JSONL file (hand-written proposals, demos, tests);
* :class:`KnobsProposer` changes no code: the controller's sampler explores the parent's knob table.

Every proposer that produces code sends it through :func:`agent.realize.realize_reply`, so replayed
and generated replies are parsed, applied and checked by the same code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import openai

from agent.brief import read_brief
from agent.client import ChatClient
from agent.errors import ProposalError
from agent.ledger import Ledger
from agent.prompt import PromptTemplates, build_prompt
from agent.proposal import GiveUp, Operation, Proposal, ProposalContext, ProposerKind, TokenUsage
from agent.proposer_base import Proposer
from agent.realize import CheckProgram, parent_knob_names, realize_reply
from agent.reasoning import split_reasoning
from agent.replay import ReplayProposer
from agent.settings import AgentSettings

log = logging.getLogger(__name__)

__all__ = ["CheckProgram", "KnobsProposer", "LLMProposer", "Proposer", "ReplayProposer"]

_MAX_REASON_CHARS = 2000


class KnobsProposer(Proposer):
    """No code change: the parent's program with new knob values chosen by the controller's sampler."""

    name = ProposerKind.KNOBS

    def propose(self, context: ProposalContext, check_program: CheckProgram) -> Proposal | GiveUp:
        return Proposal(
            hypothesis="Tune the parent's knobs (same code, new settings)",
            files={},
            proposer=ProposerKind.KNOBS,
            turns=0,
        )


class LLMProposer(Proposer):
    """Asks an OpenAI-compatible chat model; on a bad reply, says precisely what was wrong and asks again.

    Up to ``settings.repair_turns`` repair turns follow the first reply, in the same conversation.
    Every reply is applied afresh to the parent, so a repair resends the whole set of edits. A reply
    the output token limit cut off (``finish_reason == "length"``) is refused even when it parses.
    """

    name = ProposerKind.LLM

    def __init__(
        self,
        settings: AgentSettings,
        ledger: Ledger,
        client: openai.OpenAI | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.chat = ChatClient(settings, ledger, client, sleep=sleep)
        self.templates = PromptTemplates(settings.prompts_dir)
        self.brief = read_brief(settings)  # read once: a missing notes file fails before any request

    def propose(self, context: ProposalContext, check_program: CheckProgram) -> Proposal | GiveUp:
        prompt = build_prompt(context, self.templates, self.settings.prompt_token_budget, brief=self.brief)
        if prompt.omitted:
            log.info("prompt trimmed to fit the budget: %s", prompt.omitted)
        messages = prompt.messages()
        parent_knobs = parent_knob_names(context, check_program)
        usage = TokenUsage()
        transcript: list[str] = []
        error = ""
        total_turns = self.settings.repair_turns + 1
        for turn in range(1, total_turns + 1):
            reply = self.chat.complete(messages, purpose="propose" if turn == 1 else "repair")
            usage = usage + reply.usage
            transcript.append(reply.text)
            try:
                if reply.finish_reason == "length":
                    raise ProposalError(_cut_off_message(reply.text, self.settings.max_output_tokens))
                realized = realize_reply(reply.text, context, check_program, parent_knobs)
            except ProposalError as exc:
                error = str(exc)
                log.info("turn %d/%d rejected: %s", turn, total_turns, error.splitlines()[0])
                if turn < total_turns:
                    messages.append({"role": "assistant", "content": reply.text})
                    messages.append({"role": "user", "content": self.templates.render("repair", error=error)})
                continue
            proposer = (
                ProposerKind.HYPOTHESIS if context.operation == Operation.HYPOTHESIS else ProposerKind.LLM
            )
            return realized.to_proposal(proposer=proposer, usage=usage, turns=turn)
        reason = f"no usable proposal after {total_turns} turns; the last reply was rejected: {error}"
        return GiveUp(
            reason=reason[:_MAX_REASON_CHARS], turns=total_turns, usage=usage, transcript=tuple(transcript)
        )


def _cut_off_message(text: str, max_output_tokens: int) -> str:
    """Why a reply the token limit cut off is refused even if it parses: it may stop after the block
    that adds a knob and before the one that uses it, and each block it has applies cleanly."""
    where = (
        "while still reasoning, before any answer"
        if split_reasoning(text).only_reasoning
        else "before it was complete"
    )
    return (
        f"Your reply was cut off at the output token limit ({max_output_tokens} tokens) {where}, so "
        "nothing of it was used: part of a change cannot be trusted. Resend a shorter, complete "
        "answer: brief reasoning if any, a rationale of a few sentences, and SEARCH blocks that quote "
        "only the lines that change plus a little context."
    )
