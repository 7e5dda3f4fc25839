"""Prompt assembly: every section present, history trimmed in order, the program never."""

from __future__ import annotations

import logging

import pytest

from agent.errors import AgentConfigError
from agent.prompt import PromptTemplates, build_prompt, estimate_tokens
from agent.proposal import Outcome, ParentResult, ProposalContext
from tests.agent.conftest import PARENT


def outcomes(prefix: str, count: int) -> tuple[Outcome, ...]:
    return tuple(
        Outcome(hypothesis=f"{prefix} idea {n}", status="ok", val_bpb=1.3 - n / 1000, delta_bpb=-0.001)
        for n in range(count)
    )


def full_context(**overrides) -> ProposalContext:
    values = {
        "files": {"train_gpt.py": PARENT},
        "parent": ParentResult(
            status="crashed",
            artifact_bytes=15_900_000,
            train_seconds=412.25,
            curve_summary="step 0 loss 6.93 · final 3.41",
            log_tail="...\nRuntimeError: CUDA out of memory",
        ),
        "lineage": outcomes("lineage", 5),
        "tried_from_parent": outcomes("tried", 5),
        "inspirations": outcomes("inspiration", 5),
    }
    values.update(overrides)
    return ProposalContext(**values)


def test_every_section_reaches_the_prompt():
    prompt = build_prompt(full_context(), PromptTemplates(), token_budget=100_000)
    assert prompt.omitted == {}
    assert "16,000,000 bytes" in prompt.system and '<edit path="train_gpt.py">' in prompt.system
    user = prompt.user
    assert f"## train_gpt.py\n```python\n{PARENT.rstrip()}\n```" in user
    assert "artifact: 15,900,000 bytes of 16,000,000 (100,000 bytes of headroom)" in user
    assert "train time: 412.2 s" in user and "training loss: step 0 loss 6.93 · final 3.41" in user
    assert "RuntimeError: CUDA out of memory" in user  # the log tail of a failed parent
    assert "- [ok] tried idea 4: val_bpb 1.2960 (-0.0010 vs its parent)" in user
    assert "lineage idea 0" in user and "inspiration idea 4" in user


def test_over_budget_trims_inspirations_then_tried_then_oldest_lineage():
    context = full_context()
    templates = PromptTemplates()
    whole = build_prompt(context, templates, token_budget=100_000).estimated_tokens

    slightly = build_prompt(context, templates, token_budget=whole - 5)
    assert set(slightly.omitted) == {"inspirations"}
    assert "inspiration idea 0" in slightly.user and "inspiration idea 4" not in slightly.user  # worst first

    line_tokens = estimate_tokens("- [ok] inspiration idea 0: val_bpb 1.3000 (-0.0010 vs its parent)\n")
    # More than the inspirations free (their omission note takes a line back), less than all tried.
    budget = whole - 6 * line_tokens
    tighter = build_prompt(context, templates, token_budget=budget)
    dropped = tighter.omitted["tried_from_parent"]
    assert tighter.omitted["inspirations"] == 5 and 0 < dropped < 5 and "lineage" not in tighter.omitted
    assert all(f"tried idea {n}" not in tighter.user for n in range(dropped))  # oldest first
    assert all(f"tried idea {n}" in tighter.user for n in range(dropped, 5))
    assert f"({dropped} older entries omitted to fit the prompt budget)" in tighter.user
    assert tighter.estimated_tokens <= budget


def test_program_alone_over_budget_is_sent_whole_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="agent.prompt"):
        prompt = build_prompt(full_context(), PromptTemplates(), token_budget=50)
    assert PARENT.rstrip() in prompt.user
    assert prompt.omitted == {"inspirations": 5, "tried_from_parent": 5, "lineage": 5}
    assert "over the budget of 50" in caplog.text


def test_unscored_parent_and_empty_history_read_plainly():
    prompt = build_prompt(ProposalContext(files={"train_gpt.py": PARENT}), PromptTemplates(), 100_000)
    assert "# The parent's result\nNot scored yet." in prompt.user
    assert "# Lineage of the parent (root first)\n(none)" in prompt.user


def test_entry_file_is_offered_even_when_allowed_files_omit_it():
    context = ProposalContext(files={"train_gpt.py": PARENT}, allowed_files=("extra.py",))
    assert context.editable_files == ("train_gpt.py", "extra.py")
    prompt = build_prompt(context, PromptTemplates(), 100_000)
    assert "Files you may edit: train_gpt.py, extra.py." in prompt.system


def test_missing_template_names_the_file_and_the_setting(tmp_path):
    (tmp_path / "system.txt").write_text("s", encoding="utf-8")
    with pytest.raises(AgentConfigError, match=r"prompt template .*user\.txt is missing") as info:
        PromptTemplates(tmp_path)
    assert "prompts_dir" in info.value.hint
