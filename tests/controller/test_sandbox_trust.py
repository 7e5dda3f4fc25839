"""A campaign whose code comes from an LLM refuses an unconfined local sandbox unless it opts in.

"Unconfined" here is the real thing: the probe of a bwrap that does not work (``/bin/false``), not a
stand-in; the confined cases use this machine's own probe and skip where bwrap does not work.
"""

from __future__ import annotations

import pytest

from controller.config import load_campaign
from controller.errors import ConfigError
from controller.search.workspace import open_workspace, require_trusted_sandbox
from sandbox import probe_bwrap


@pytest.fixture
def campaign(make_campaign):
    """The test campaign (local backend), as ``proposer`` and ``[sandbox]`` settings make it."""
    config = load_campaign(make_campaign())

    def make(proposer: str = "llm", **sandbox):
        return config.model_copy(
            update={
                "agent": config.agent.model_copy(update={"proposer": proposer}),
                "sandbox": config.sandbox.model_copy(update=sandbox),
            }
        )

    return make


@pytest.fixture(scope="module")
def unconfined():
    probe = probe_bwrap("/bin/false")
    assert probe.bwrap is None
    return probe


def test_an_llm_campaign_refuses_an_unconfined_local_sandbox_and_names_the_fixes(campaign, unconfined):
    config = campaign("llm")
    with pytest.raises(ConfigError) as refused:
        open_workspace(config, progress=False, bwrap=unconfined)
    message = str(refused.value)
    assert "cannot confine" in message and "/bin/false does not work here" in message
    assert "apt-get install bubblewrap" in message
    assert 'backend = "docker"' in message
    assert "allow_unconfined_local = true" in message
    assert not config.run_dir.exists()  # refused before anything was created


def test_the_opt_in_lets_an_llm_campaign_run_unconfined(campaign, unconfined):
    require_trusted_sandbox(campaign("llm", allow_unconfined_local=True), unconfined)


@pytest.mark.parametrize("proposer", ["replay", "knobs"])
def test_campaigns_without_llm_code_run_unconfined(campaign, unconfined, proposer):
    require_trusted_sandbox(campaign(proposer), unconfined)


def test_the_docker_backend_needs_no_bwrap(campaign, unconfined):
    require_trusted_sandbox(campaign("llm", backend="docker"), unconfined)


def test_an_llm_campaign_opens_where_the_local_sandbox_is_confined(campaign, monkeypatch):
    probe = probe_bwrap()
    if probe.bwrap is None:
        pytest.skip(f"bwrap does not work here: {probe.problem}")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    with open_workspace(campaign("llm"), progress=False) as ws:
        assert ws.proposers
