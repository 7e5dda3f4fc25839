"""Reasoning that a model writes into its reply before the answer, and taking it out.

Reasoning models served without a reasoning parser (DeepSeek-R1, Qwen3 and QwQ on vLLM, llama.cpp or
Ollama) put their chain of thought in the reply itself, as ``<think>...</think>``; others use
``<thinking>`` or ``<reasoning>``. Such a block often drafts an edit, or a first hypothesis, that the
answer then revises, so nothing inside it may be read as part of the proposal. Three shapes occur:

* closed blocks, anywhere in the reply (there may be several);
* a lone closing tag: the chat template put the opening ``<think>`` in the prompt, so the reply starts
  inside the reasoning and everything before the first ``</think>`` belongs to it;
* an opening tag at the start whose end never comes: the reply was cut off while still reasoning.

Servers that do parse reasoning send it in a separate field that the client never reads, so for
them there is nothing to take out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TAGS = "think|thinking|reasoning"
_CLOSED = re.compile(rf"<({_TAGS})>.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_OPEN = re.compile(rf"<(?:{_TAGS})>", re.IGNORECASE)
_CLOSE = re.compile(rf"</(?:{_TAGS})\s*>", re.IGNORECASE)
_UNCLOSED_AT_START = re.compile(rf"\A\s*<(?:{_TAGS})>", re.IGNORECASE)


@dataclass(frozen=True)
class SplitReply:
    answer: str  # the reply with reasoning blanked out (newlines kept, so reply line numbers hold)
    had_reasoning: bool

    @property
    def only_reasoning(self) -> bool:
        """Whether the reply was reasoning and nothing else (the answer never came)."""
        return self.had_reasoning and not self.answer.strip()


def split_reasoning(text: str) -> SplitReply:
    """``text`` with every reasoning block replaced by as many newlines as it held."""
    answer = text
    close = _CLOSE.search(answer)
    opening = _OPEN.search(answer)
    if close is not None and (opening is None or opening.start() > close.start()):
        answer = _blank(answer, 0, close.end())
    answer = _CLOSED.sub(lambda match: "\n" * match.group(0).count("\n"), answer)
    if _UNCLOSED_AT_START.match(answer):
        answer = _blank(answer, 0, len(answer))
    return SplitReply(answer=answer, had_reasoning=answer != text)


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + "\n" * text.count("\n", start, end) + text[end:]
