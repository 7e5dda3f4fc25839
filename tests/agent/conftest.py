"""Fixtures for the agent tests: a scripted chat server, a small parent program, its static check."""

from __future__ import annotations

import openai
import pytest

from agent.ledger import Ledger
from agent.proposal import ProposalContext
from agent.proposers import LLMProposer
from agent.settings import AgentSettings
from sandbox.knobs import parse_knob_table  # tests sit above both packages; the agent never imports it
from tests.agent.fake_llm import ScriptedChatServer

PARENT = '''"""A tiny stand-in for train_gpt.py."""

import os


def Knob(*args, **kwargs):
    return args


KNOBS = [
    Knob("NUM_LAYERS", int, 4, low=1, high=8),
    Knob("MATRIX_LR", float, 0.04, low=0.005, high=0.2, log=True),
]


class Model:
    def __init__(self, layers):
        self.layers = layers

    def forward(self, x):
        for _ in range(self.layers):
            x = x * 2
        return x


def evaluate():
    return 0.0


def warmup():
    return 0.0


def train():
    model = Model(int(os.environ.get("NUM_LAYERS", 4)))
    lr = float(os.environ.get("MATRIX_LR", 0.04))
    return model.forward(lr)
'''

PRICES = {"test-model": (2.0, 8.0)}  # $ per million input / output tokens


def check_program(source: str) -> tuple[str, ...]:
    """What the controller injects: the knob names, or ValueError naming the problem."""
    return tuple(knob.name for knob in parse_knob_table(source, filename="train_gpt.py"))


@pytest.fixture
def context() -> ProposalContext:
    return ProposalContext(files={"train_gpt.py": PARENT})


@pytest.fixture
def llm_server():
    server = ScriptedChatServer().start()
    yield server
    server.stop()


def make_settings(base_url: str, **overrides: object) -> AgentSettings:
    values: dict[str, object] = {
        "base_url": base_url,
        "model": "test-model",
        "api_key_env": "AUTOGOLF_TEST_KEY",
        "request_timeout_seconds": 5.0,
        "max_attempts": 3,
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "repair_turns": 3,
        "prices": PRICES,
    }
    values.update(overrides)
    return AgentSettings.model_validate(values)


@pytest.fixture
def make_proposer(llm_server):
    """Builds an LLMProposer wired to the scripted server with the real openai client (no retries)."""

    def build(ledger: Ledger | None = None, **overrides: object) -> LLMProposer:
        settings = make_settings(llm_server.base_url, **overrides)
        client = openai.OpenAI(
            base_url=llm_server.base_url,
            api_key="test-key",
            max_retries=0,
            timeout=settings.request_timeout_seconds,
        )
        return LLMProposer(settings, ledger or Ledger(None), client=client)

    return build
