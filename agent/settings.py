"""Settings of the LLM agent, loaded from the campaign's ``[agent]`` table (unknown keys are errors)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.errors import AgentConfigError


class AgentSettings(BaseModel):
    """How to reach an OpenAI-compatible chat endpoint and how hard to try.

    Secrets never live here: ``api_key_env`` names the environment variable that holds the key.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4.1"
    api_key_env: str = "OPENAI_API_KEY"
    # Local servers (vLLM, llama.cpp, Ollama) often need no key; then a placeholder is sent.
    api_key_optional: bool = False
    # None leaves it out of the request (some reasoning models accept only their default).
    temperature: float | None = Field(default=0.7, ge=0.0, le=2.0)
    max_output_tokens: int = Field(default=8192, ge=1)
    # OpenAI's reasoning models only accept max_completion_tokens; most other servers only max_tokens.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    request_timeout_seconds: float = Field(default=300.0, gt=0.0)
    max_attempts: int = Field(default=6, ge=1)  # per chat call, transient failures included
    backoff_base_seconds: float = Field(default=2.0, ge=0.0)
    backoff_max_seconds: float = Field(default=120.0, ge=0.0)
    repair_turns: int = Field(default=3, ge=0)  # extra turns after the first reply
    prompt_token_budget: int = Field(default=60_000, ge=1)
    # model -> (input $ per million tokens, output $ per million tokens); unknown models cost 0.
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    extra_body: dict[str, Any] = Field(default_factory=dict)  # server-specific request fields
    prompts_dir: Path | None = None  # None: the repository's prompts/ folder
    # The research brief in the system prompt (agent.brief): prompts/brief.txt, and this Markdown
    # file of the user's own notes after it ("extend") or instead of it ("replace").
    brief: Path | None = None
    brief_mode: Literal["extend", "replace"] = "extend"

    @model_validator(mode="after")
    def _check(self) -> AgentSettings:
        if self.backoff_max_seconds < self.backoff_base_seconds:
            raise ValueError(
                f"backoff_max_seconds ({self.backoff_max_seconds}) is below backoff_base_seconds "
                f"({self.backoff_base_seconds})"
            )
        for model, price in self.prices.items():
            if min(price) < 0:
                raise ValueError(f"prices[{model!r}] = {price}: prices cannot be negative")
        return self

    def api_key(self) -> str:
        """The key from the environment; a clear error naming the variable when it is unset."""
        key = os.environ.get(self.api_key_env, "").strip()
        if key:
            return key
        if self.api_key_optional:
            return "not-needed"  # the openai client insists on some string
        raise AgentConfigError(
            f"the environment variable {self.api_key_env} is not set, so there is no API key for "
            f"{self.base_url}",
            hint=f"export {self.api_key_env}=<your key>, or set api_key_optional = true for a local "
            "server that needs none",
        )

    def price_per_token(self) -> tuple[float, float]:
        """(input, output) dollars per token for this model; (0, 0) when the table does not list it."""
        input_per_mtok, output_per_mtok = self.prices.get(self.model, (0.0, 0.0))
        return input_per_mtok / 1e6, output_per_mtok / 1e6
