"""Agent settings: unknown keys fail, the key comes only from the named environment variable."""

from __future__ import annotations

import pydantic
import pytest

from agent.errors import AgentConfigError
from agent.ledger import Ledger
from agent.proposal import Proposal
from agent.proposers import LLMProposer
from agent.settings import AgentSettings
from tests.agent.conftest import check_program, make_settings
from tests.agent.fake_llm import completion
from tests.agent.replies import GOOD_FIX


def test_unknown_key_is_rejected_by_name():
    with pytest.raises(pydantic.ValidationError, match="temprature"):
        AgentSettings.model_validate({"temprature": 0.5})


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("AUTOGOLF_MISSING_KEY", raising=False)
    settings = AgentSettings(api_key_env="AUTOGOLF_MISSING_KEY")
    with pytest.raises(AgentConfigError, match="AUTOGOLF_MISSING_KEY is not set") as info:
        LLMProposer(settings, Ledger(None))
    assert "api_key_optional" in info.value.hint


def test_optional_key_allows_servers_without_one(monkeypatch):
    monkeypatch.delenv("AUTOGOLF_MISSING_KEY", raising=False)
    assert AgentSettings(api_key_env="AUTOGOLF_MISSING_KEY", api_key_optional=True).api_key() == "not-needed"


def test_key_from_the_environment_reaches_the_server(llm_server, monkeypatch, context):
    monkeypatch.setenv("AUTOGOLF_TEST_KEY", "sk-from-env")
    llm_server.add(completion(GOOD_FIX))
    proposer = LLMProposer(make_settings(llm_server.base_url, temperature=None), Ledger(None))
    assert isinstance(proposer.propose(context, check_program), Proposal)
    (request,) = llm_server.requests
    assert request.headers["authorization"] == "Bearer sk-from-env"
    assert "temperature" not in request.body


def test_prices_are_per_million_tokens_and_unknown_models_cost_nothing():
    settings = AgentSettings(model="a", prices={"a": (3.0, 15.0)})
    assert settings.price_per_token() == (3e-6, 15e-6)
    assert AgentSettings(model="b", prices={"a": (3.0, 15.0)}).price_per_token() == (0.0, 0.0)
