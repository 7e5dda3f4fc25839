"""The research brief (agent.brief) and the richer training context reach the model's prompt; a
campaign's notes file extends or replaces the built-in brief, and a missing one is a config error."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.brief import NOTES_HEADING, read_brief
from agent.errors import AgentConfigError
from agent.prompt import DEFAULT_PROMPTS_DIR, PromptTemplates, build_prompt
from agent.proposal import CurveSample, FindingSummary, ParentResult, ProposalContext
from agent.settings import AgentSettings
from controller.config import load_campaign
from controller.errors import ConfigError
from tests.agent.conftest import PARENT, check_program
from tests.agent.fake_llm import completion
from tests.agent.replies import CLEAN_REPLY

BUILTIN = (DEFAULT_PROMPTS_DIR / "brief.txt").read_text(encoding="utf-8").strip()
NOTES = "Our own runs: EMA decay 0.999 beat 0.99 by $0.003 bpb. Never touch the tokenizer."


def campaign_file(folder: Path, agent_lines: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "campaign.toml"
    path.write_text(
        f"""
[campaign]
name = "brief"
[data]
embedded = true
[tiers.proxy]
device = "cpu"
train_seconds = 10
eval_seconds = 10
[search]
explore_tier = "proxy"
confirm_tier = "proxy"
preflight_smoke = false
[agent]
{agent_lines}
""",
        encoding="utf-8",
    )
    return path


def test_the_builtin_brief_names_the_known_techniques_and_what_they_trade_against():
    brief = read_brief(AgentSettings())
    assert brief == BUILTIN
    for words in ("sliding", "quantization", "EMA", "Test-time training", "ms/step", "headroom"):
        assert words in brief


def test_notes_extend_the_builtin_brief_or_replace_it(tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text(NOTES + "\n", encoding="utf-8")
    extended = read_brief(AgentSettings(brief=notes))
    assert extended == f"{BUILTIN}\n\n{NOTES_HEADING}\n{NOTES}"  # a "$" in the notes is no placeholder
    assert read_brief(AgentSettings(brief=notes, brief_mode="replace")) == NOTES


def test_an_unreadable_notes_file_names_itself(tmp_path):
    with pytest.raises(AgentConfigError) as info:
        read_brief(AgentSettings(brief=tmp_path / "gone.md"))
    assert "gone.md" in str(info.value) and "[agent] brief" in info.value.hint


def test_the_campaign_file_resolves_the_brief_next_to_it_and_refuses_a_missing_one(tmp_path):
    (tmp_path / "c" / "notes.md").parent.mkdir(parents=True)
    (tmp_path / "c" / "notes.md").write_text(NOTES, encoding="utf-8")
    config = load_campaign(campaign_file(tmp_path / "c", 'brief = "notes.md"\nbrief_mode = "replace"'))
    settings = config.agent.to_settings()
    assert settings.brief == (tmp_path / "c" / "notes.md").resolve() and settings.brief_mode == "replace"

    with pytest.raises(ConfigError) as info:
        load_campaign(campaign_file(tmp_path / "d", 'brief = "missing.md"'))
    message = str(info.value)
    assert f"agent.brief: file not found: {(tmp_path / 'd' / 'missing.md').resolve()}" in message
    assert "(fix: write your notes there" in message
    with pytest.raises(ConfigError, match="brief_mode"):
        load_campaign(campaign_file(tmp_path / "e", 'brief_mode = "append"'))


def test_the_campaigns_notes_reach_the_system_prompt_sent_to_the_model(tmp_path, llm_server, make_proposer):
    notes = tmp_path / "notes.md"
    notes.write_text(NOTES, encoding="utf-8")
    llm_server.add(completion(CLEAN_REPLY))
    make_proposer(brief=notes).propose(ProposalContext(files={"train_gpt.py": PARENT}), check_program)
    system = llm_server.requests[0].messages[0]["content"]
    assert system.rstrip().endswith(f"{NOTES_HEADING}\n{NOTES}")
    assert "Research brief: what is known to work" in system and "<edit path=" in system


def test_how_the_parent_trained_is_in_the_prompt_beside_its_own_parent():
    parent = ParentResult(
        status="ok",
        val_bpb=1.2244,
        artifact_bytes=15_863_489,
        train_seconds=599.6,
        train_budget_seconds=600,
        ms_per_step=43.5,
        tokens_per_second=12_052_598,
        steps=13_780,
        steps_planned=20_000,
        grandparent_trial=3,
        grandparent_val_bpb=1.2301,
        grandparent_ms_per_step=41.0,
        curve_vs_grandparent=(
            CurveSample(step=1000, train_loss=3.912, grandparent_loss=3.95),
            CurveSample(step=13_780, train_loss=2.871, grandparent_loss=None),
        ),
    )
    user = build_prompt(
        ProposalContext(files={"train_gpt.py": PARENT}, parent=parent), PromptTemplates(), 100_000
    ).user
    assert "artifact: 15,863,489 bytes of 16,000,000 (136,511 bytes of headroom)" in user
    assert (
        "training pace: budget 600 s (the tier's training limit) · 13,780 steps reached of 20,000 planned · "
        "43.5 ms/step · 12,052,598 tokens/s"
    ) in user
    assert "its own parent (trial 3): val_bpb 1.2301 · 41.0 ms/step" in user
    assert "step 1000 3.912 (-0.038) · step 13780 2.871" in user


def test_findings_have_their_own_section_and_an_empty_campaign_says_so():
    templates = PromptTemplates()
    empty = build_prompt(ProposalContext(files={"train_gpt.py": PARENT}), templates, 100_000).user
    assert "# What the campaign has learned" in empty and "(none yet)" in empty
    finding = FindingSummary(
        verdict="refuted",
        hypothesis="Swap relu² for GELU",
        change="code +2 −2 lines",
        tier="full",
        delta_bpb=0.0012,
        delta_std_bpb=0.0009,
        seeds=3,
        bytes_delta=0,
        ms_per_step_delta=1.5,
        note="Welch test failed",
    )
    user = build_prompt(
        ProposalContext(files={"train_gpt.py": PARENT}, findings=(finding,)), templates, 100_000
    ).user
    assert (
        "- [refuted] Swap relu² for GELU (code +2 −2 lines): Δ +0.0012 ± 0.0009 bpb over 3 seed(s) (full) · "
        "bytes +0 · step +1.5 ms (Welch test failed)"
    ) in user
