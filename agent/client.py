"""One chat call to an OpenAI-compatible endpoint, with our own retries and a ledger line per attempt.

Only ``chat.completions`` is used, so vLLM, llama.cpp, Ollama and hosted APIs all work. The openai
client's own retries are switched off (``max_retries=0``) so that backoff, jitter and the final
error are ours: exponential backoff with "equal jitter" (half the delay fixed, half random; see the
AWS Architecture Blog, "Exponential Backoff and Jitter", 2015), honouring a server's Retry-After.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import openai

from agent.errors import LLMRejected, LLMUnavailable
from agent.ledger import Ledger
from agent.prompt import estimate_tokens
from agent.proposal import TokenUsage
from agent.settings import AgentSettings

log = logging.getLogger(__name__)

# Statuses worth retrying besides 429 and 5xx: request timeout, conflict, too early.
_TRANSIENT_STATUSES = {408, 409, 425, 429}


@dataclass(frozen=True)
class ChatReply:
    text: str
    usage: TokenUsage
    finish_reason: str = ""


class _BadResponse(Exception):
    """The server answered 2xx with something that is not a chat completion."""


def build_openai_client(settings: AgentSettings) -> openai.OpenAI:
    """An ``openai.OpenAI`` for ``settings`` with the client's own retries off (we retry ourselves)."""
    return openai.OpenAI(
        base_url=settings.base_url,
        api_key=settings.api_key(),
        timeout=settings.request_timeout_seconds,
        max_retries=0,
    )


class ChatClient:
    """Sends one conversation and returns the reply text, retrying transient failures.

    ``sleep`` and ``rng`` are injectable so tests run without real waiting or randomness.
    """

    def __init__(
        self,
        settings: AgentSettings,
        ledger: Ledger,
        client: openai.OpenAI | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.client = client or build_openai_client(settings)
        self._sleep = sleep
        self._rng = rng or random.Random()

    def complete(self, messages: list[dict[str, str]], *, purpose: str = "") -> ChatReply:
        """The model's reply to ``messages``.

        Raises :class:`LLMRejected` at once for a non-transient refusal (401, 403, 404, 400, ...) and
        :class:`LLMUnavailable` after ``max_attempts`` transient failures (429, 5xx, timeouts,
        connection errors, malformed bodies). Never waits longer than the attempts, the request
        timeout and the capped backoff allow.
        """
        settings = self.settings
        last = ""
        for attempt in range(1, settings.max_attempts + 1):
            started = time.monotonic()
            retry_after: float | None = None
            try:
                reply = self._request(messages)
            except openai.APITimeoutError as exc:
                outcome, detail = (
                    "timeout",
                    f"no answer within {settings.request_timeout_seconds:g} s ({exc})",
                )
            except openai.APIConnectionError as exc:
                outcome, detail = "connection_error", f"{exc} ({exc.__cause__ or 'no detail'})"
            except openai.APIStatusError as exc:
                detail = f"HTTP {exc.status_code}: {_server_message(exc)}"
                if exc.status_code not in _TRANSIENT_STATUSES and exc.status_code < 500:
                    self._record("rejected", started, purpose, attempt, detail)
                    raise LLMRejected(
                        f"{settings.base_url} refused the request for model {settings.model!r}: {detail}",
                        hint=f"check base_url ({settings.base_url}), model ({settings.model}) and the API "
                        f"key in ${settings.api_key_env}; retrying will not help",
                    ) from exc
                outcome = "rate_limited" if exc.status_code == 429 else "server_error"
                retry_after = _retry_after_seconds(exc)
            except (_BadResponse, json.JSONDecodeError, openai.APIResponseValidationError) as exc:
                outcome, detail = "bad_response", f"the server's answer is not a chat completion: {exc}"
            else:
                latency = time.monotonic() - started
                cost_in, cost_out = settings.price_per_token()
                usage = TokenUsage(
                    prompt_tokens=reply.usage.prompt_tokens,
                    completion_tokens=reply.usage.completion_tokens,
                    cost_usd=reply.usage.prompt_tokens * cost_in + reply.usage.completion_tokens * cost_out,
                )
                self.ledger.record(
                    model=settings.model,
                    outcome="ok",
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    cost_usd=usage.cost_usd,
                    latency_seconds=latency,
                    purpose=purpose,
                    attempt=attempt,
                    detail=reply.finish_reason if reply.finish_reason not in ("", "stop") else "",
                )
                return ChatReply(text=reply.text, usage=usage, finish_reason=reply.finish_reason)
            self._record(outcome, started, purpose, attempt, detail)
            last = f"{outcome}: {detail}"
            if attempt < settings.max_attempts:
                delay = self._backoff_seconds(attempt, retry_after)
                log.warning(
                    "chat call attempt %d/%d failed (%s); retrying in %.1f s",
                    attempt,
                    settings.max_attempts,
                    last,
                    delay,
                )
                self._sleep(delay)
        raise LLMUnavailable(
            f"{settings.base_url} (model {settings.model}) did not answer after {settings.max_attempts} "
            f"attempts; the last failure was {last}",
            hint="check that the server is up and reachable from here; for a slow or busy server raise "
            "request_timeout_seconds, max_attempts or backoff_max_seconds in the agent settings",
        )

    def _request(self, messages: list[dict[str, str]]) -> ChatReply:
        settings = self.settings
        response = self.client.chat.completions.create(
            model=settings.model,
            messages=messages,  # type: ignore[arg-type]
            temperature=settings.temperature if settings.temperature is not None else openai.NOT_GIVEN,
            timeout=settings.request_timeout_seconds,
            extra_body={settings.max_tokens_field: settings.max_output_tokens, **settings.extra_body},
        )
        try:
            choice = response.choices[0]
            text = choice.message.content or ""
            finish_reason = str(choice.finish_reason or "")
        except (AttributeError, IndexError, TypeError, KeyError) as exc:
            raise _BadResponse(f"no choices[0].message in {str(response)[:200]!r}") from exc
        usage = getattr(response, "usage", None)
        if usage is not None and usage.prompt_tokens is not None:
            tokens = TokenUsage(
                prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens or 0
            )
        else:
            # Some servers omit usage; estimate so the budget still counts something.
            prompt_chars = "".join(m.get("content", "") for m in messages)
            tokens = TokenUsage(
                prompt_tokens=estimate_tokens(prompt_chars), completion_tokens=estimate_tokens(text)
            )
        return ChatReply(text=text, usage=tokens, finish_reason=finish_reason)

    def _record(self, outcome: str, started: float, purpose: str, attempt: int, detail: str) -> None:
        self.ledger.record(
            model=self.settings.model,
            outcome=outcome,
            latency_seconds=time.monotonic() - started,
            purpose=purpose,
            attempt=attempt,
            detail=detail,
        )

    def _backoff_seconds(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(
            self.settings.backoff_max_seconds, self.settings.backoff_base_seconds * 2 ** (attempt - 1)
        )
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.settings.backoff_max_seconds))
        return delay


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        return json.dumps(body)[:300]
    return str(exc.message)[:300]


def _retry_after_seconds(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the exponential backoff is good enough
