"""Parsing replies: strict about structure, forgiving about wrapping."""

from __future__ import annotations

import pytest

from agent.errors import ProposalError
from agent.format import parse_reply, split_unified_diff
from agent.proposal import EditKind

BLOCK = "<<<<<<< SEARCH\nold line\n=======\nnew line\n>>>>>>> REPLACE\n"


def test_sections_and_blocks_are_read_in_order():
    reply = (
        "<hypothesis>  Use a\n  deeper model </hypothesis>\n<rationale>\nWhy.\n</rationale>\n"
        f'<edit path="./train_gpt.py">\n{BLOCK}{BLOCK.replace("old", "other")}</edit>'
    )
    parsed = parse_reply(reply)
    assert parsed.hypothesis == "Use a deeper model"
    assert parsed.rationale == "Why."
    assert [(e.path, e.search, e.replace) for e in parsed.edits] == [
        ("train_gpt.py", "old line\n", "new line\n"),
        ("train_gpt.py", "other line\n", "new line\n"),
    ]


def test_edit_without_path_and_bare_blocks_go_to_the_entry_file():
    with_tag = parse_reply(f"<hypothesis>h</hypothesis><edit>\n{BLOCK}</edit>", entry="main.py")
    bare = parse_reply(f"<hypothesis>h</hypothesis>\nHere you go:\n{BLOCK}", entry="main.py")
    assert [e.path for e in with_tag.edits] == ["main.py"]
    assert [e.path for e in bare.edits] == ["main.py"]


def test_missing_closing_edit_tag_runs_to_the_end_and_fences_inside_are_ignored():
    reply = f'<hypothesis>h</hypothesis>\n<edit path="train_gpt.py">\n```python\n{BLOCK}```\n'
    (edit,) = parse_reply(reply).edits
    assert (edit.search, edit.replace) == ("old line\n", "new line\n")


def test_marker_lengths_from_five_to_nine_are_accepted():
    reply = "<hypothesis>h</hypothesis>\n<<<<< SEARCH\na\n=========\nb\n>>>>>>>>> REPLACE\n"
    (edit,) = parse_reply(reply).edits
    assert (edit.search, edit.replace) == ("a\n", "b\n")


def test_missing_hypothesis_is_an_error_for_the_model():
    with pytest.raises(ProposalError, match=r"no <hypothesis>\.\.\.</hypothesis> section"):
        parse_reply(f"<edit>\n{BLOCK}</edit>")


def test_search_without_replace_marker_names_the_reply_line():
    reply = "<hypothesis>h</hypothesis>\n<edit>\n<<<<<<< SEARCH\na\n=======\nb\n</edit>"
    with pytest.raises(ProposalError, match=r"Reply line 3: .*no `>>>>>>> REPLACE` line"):
        parse_reply(reply)


def test_divider_without_search_is_an_error():
    with pytest.raises(ProposalError, match="without a `<<<<<<< SEARCH` line"):
        parse_reply("<hypothesis>h</hypothesis>\n<edit>\na\n=======\nb\n>>>>>>> REPLACE\n</edit>")


def test_edit_holding_neither_blocks_nor_diff_is_an_error():
    with pytest.raises(ProposalError, match='<edit path="x.py"> starting at reply line 2 holds neither'):
        parse_reply('<hypothesis>h</hypothesis>\n<edit path="x.py">\njust prose\n</edit>')


def test_fenced_multi_file_diff_becomes_one_edit_per_file():
    diff = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n--- a/y.py\n+++ b/y.py\n@@ -1 +1 @@\n-c\n+d\n"
    parsed = parse_reply(f"<hypothesis>h</hypothesis>\n```diff\n{diff}```\n")
    assert [(e.kind, e.path) for e in parsed.edits] == [
        (EditKind.UNIFIED_DIFF, "x.py"),
        (EditKind.UNIFIED_DIFF, "y.py"),
    ]
    assert parsed.edits[1].diff == "--- a/y.py\n+++ b/y.py\n@@ -1 +1 @@\n-c\n+d\n"


def test_headerless_hunks_inside_an_edit_take_the_edit_path():
    (edit,) = split_unified_diff("@@ -1 +1 @@\n-a\n+b\n", default_path="train_gpt.py")
    assert edit.diff.startswith("--- a/train_gpt.py\n+++ b/train_gpt.py\n@@")


def test_unfenced_diff_amid_prose_is_found():
    reply = (
        "<hypothesis>h</hypothesis>\nThe change:\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n c\n"
        "\nThat should help.\n"
    )
    (edit,) = parse_reply(reply).edits
    assert (edit.kind, edit.path) == (EditKind.UNIFIED_DIFF, "x.py")
    assert edit.diff == "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n c\n"  # the prose is left out


def test_stray_marker_after_an_edit_names_its_own_reply_line():
    # A divider that a REPLACE marker closes is a block missing its SEARCH line, not a heading.
    before = f'<hypothesis>h</hypothesis>\n<edit path="x.py">\n{BLOCK}</edit>\nprose\n'
    with pytest.raises(ProposalError, match=r"^Reply line 10: `=======` appears without"):
        parse_reply(before + "=======\nb\n>>>>>>> REPLACE\n")
    with pytest.raises(ProposalError, match=r"^Reply line 10: `>>>>>>> REPLACE` appears without"):
        parse_reply(before + ">>>>>>> REPLACE\n")


def test_setext_headings_in_chatter_are_not_dividers():
    reply = (
        "<hypothesis>h</hypothesis>\nPlan\n=====\nOne change.\n"
        f'<edit path="x.py">\nWhy\n=========\n{BLOCK}Done\n=======\n</edit>\nSummary\n======\nThat is all.\n'
    )
    (edit,) = parse_reply(reply).edits
    assert (edit.path, edit.search, edit.replace) == ("x.py", "old line\n", "new line\n")


def test_bare_blocks_after_a_setext_heading_still_parse():
    reply = f"<hypothesis>h</hypothesis>\nThe edit\n========\n{BLOCK}"
    (edit,) = parse_reply(reply, entry="main.py").edits
    assert (edit.path, edit.search, edit.replace) == ("main.py", "old line\n", "new line\n")


def test_block_missing_its_search_line_is_blamed_on_its_divider_not_an_earlier_heading():
    reply = "<hypothesis>h</hypothesis>\n<edit>\nPlan\n=====\nold\n=======\nnew\n>>>>>>> REPLACE\n</edit>"
    with pytest.raises(ProposalError, match=r"^Reply line 6: `=======` appears without"):
        parse_reply(reply)


def test_search_block_without_divider_says_so_despite_a_heading_after_it():
    reply = "<hypothesis>h</hypothesis>\n<edit>\n<<<<<<< SEARCH\na\n>>>>>>> REPLACE\nNotes\n=====\n</edit>"
    with pytest.raises(ProposalError, match=r"Reply line 3: .*has no `=======` line"):
        parse_reply(reply)


def test_diff_lines_that_look_like_file_headers_stay_in_their_hunk():
    # Lua comments "-- a/b ..." replaced by "++ c/d ...": inside the hunk's counts they are body lines.
    lua = "--- a/m.lua\n+++ b/m.lua\n@@ -1,2 +1,2 @@\n x = 1\n--- a/b is the ratio\n+++ c/d is the ratio\n"
    other = "--- a/n.lua\n+++ b/n.lua\n@@ -1 +1 @@\n-y = 1\n+y = 2\n"
    edits = split_unified_diff(lua + other)
    assert [(e.path, e.diff) for e in edits] == [("m.lua", lua), ("n.lua", other)]


def test_a_header_after_a_hunk_with_understated_counts_still_starts_the_next_file():
    first = "--- a/m.lua\n+++ b/m.lua\n@@ -1 +1 @@\n x = 1\n--- note\n+-- other note\n"
    second = "--- a/n.lua\n+++ b/n.lua\n@@ -1 +1 @@\n-y = 1\n+y = 2\n"
    edits = split_unified_diff(first + second)
    assert [(e.path, e.diff) for e in edits] == [("m.lua", first), ("n.lua", second)]


def test_an_underline_inside_the_search_text_does_not_split_the_block():
    # An RST docstring title underline in the quoted code is a 5-9 "=" line too; "=======" is the divider.
    reply = (
        '<hypothesis>h</hypothesis>\n<edit>\n<<<<<<< SEARCH\n"""Model\n=====\n"""\n=======\n'
        '"""Deeper model\n=====\n"""\n>>>>>>> REPLACE\n</edit>'
    )
    (edit,) = parse_reply(reply).edits
    assert (edit.search, edit.replace) == ('"""Model\n=====\n"""\n', '"""Deeper model\n=====\n"""\n')


def test_a_header_inside_overstated_counts_still_starts_the_next_file():
    first = "--- a/m.py\n+++ b/m.py\n@@ -1,5 +1,5 @@\n-a\n+b\n"
    second = "--- a/n.py\n+++ b/n.py\n@@ -1 +1 @@\n-c\n+d\n"
    assert [(e.path, e.diff) for e in split_unified_diff(first + second)] == [
        ("m.py", first),
        ("n.py", second),
    ]


@pytest.mark.parametrize(
    ("prose", "hypothesis", "rationale"),
    [
        ("# Hypothesis\nGo deeper.\n\n# Rationale\nDepth helps.\n", "Go deeper.", "Depth helps."),
        (
            "### 1. Hypothesis:\n**Go deeper.**\n\n### 2. Rationale\nDepth helps.\n",
            "Go deeper.",
            "Depth helps.",
        ),
        ("## Hypothesis: Go deeper\n## Rationale — Depth helps.\n", "Go deeper", "Depth helps."),
        ("**Hypothesis:** Go deeper.\n**Rationale:** Depth helps.\n", "Go deeper.", "Depth helps."),
        ("- **Hypothesis**: Go deeper.\n- **Rationale**: Depth helps.\n", "Go deeper.", "Depth helps."),
        (
            "**Hypothesis**\nGo\ndeeper.\n\nnot this\n**Rationale**\nDepth.\n\nHelps.\n",
            "Go deeper.",
            "Depth.\n\nHelps.",
        ),
        ("Hypothesis: Go deeper.\nRationale: Depth helps.\n", "Go deeper.", "Depth helps."),
    ],
)
def test_markdown_sections_stand_in_for_the_tags(prose, hypothesis, rationale):
    parsed = parse_reply(f'{prose}\n<edit path="x.py">\n{BLOCK}</edit>\nHope this helps!\n')
    assert (parsed.hypothesis, parsed.rationale) == (hypothesis, rationale)


def test_a_markdown_rationale_ends_at_the_next_heading_edit_label_or_block():
    base = "## Hypothesis\nGo deeper.\n\n## Rationale\nDepth helps.\n\n**Risk:** slow.\n\n"
    assert parse_reply(base + "## Plan\nOne block.\n" + BLOCK).rationale == "Depth helps.\n\n**Risk:** slow."
    assert parse_reply(base + "**Changes:**\n" + BLOCK).rationale == "Depth helps.\n\n**Risk:** slow."
    assert parse_reply(base + BLOCK + "Done.\n").rationale == "Depth helps.\n\n**Risk:** slow."


def test_tags_win_over_markdown_section_by_section():
    reply = (
        "## Hypothesis\nFrom the heading.\n## Rationale\nFrom the heading.\n"
        f"<hypothesis>From the tag.</hypothesis>\n{BLOCK}"
    )
    assert (parse_reply(reply).hypothesis, parse_reply(reply).rationale) == (
        "From the tag.",
        "From the heading.",
    )


def test_labels_inside_edits_blocks_and_code_fences_are_program_text_not_sections():
    comment_in_block = BLOCK.replace("old line", "# Hypothesis: a comment of the program")
    for reply in (
        f'<edit path="x.py">\n{comment_in_block}</edit>\n',
        comment_in_block,
        f"```python\n# Hypothesis: sketch\nx = 1\n```\n{BLOCK}",
        f"Hypothesis testing is what we do here.\n{BLOCK}",  # a word of prose, not a label
    ):
        with pytest.raises(ProposalError, match=r"no <hypothesis>\.\.\.</hypothesis> section"):
            parse_reply(reply)


@pytest.mark.parametrize("tag", ["think", "thinking", "reasoning", "THINK"])
def test_reasoning_blocks_are_dropped_with_the_drafts_inside_them(tag):
    draft = f"<hypothesis>draft</hypothesis>\n{BLOCK.replace('new', 'draft')}"
    reply = f"<{tag}>\n{draft}</{tag}>\n<hypothesis>final</hypothesis>\n{BLOCK}"
    parsed = parse_reply(reply)
    assert parsed.hypothesis == "final"
    assert [(e.search, e.replace) for e in parsed.edits] == [("old line\n", "new line\n")]


def test_a_lone_closing_tag_ends_reasoning_that_the_chat_template_opened():
    reply = (
        f"draft thoughts\n{BLOCK.replace('new', 'draft')}</think>\n<hypothesis>final</hypothesis>\n{BLOCK}"
    )
    (edit,) = parse_reply(reply).edits
    assert edit.replace == "new line\n"


def test_reply_lines_are_still_counted_from_the_top_after_reasoning_is_dropped():
    reply = "<think>\none\ntwo\n</think>\n<hypothesis>h</hypothesis>\n<edit>\n<<<<<<< SEARCH\na\n</edit>"
    with pytest.raises(ProposalError, match=r"^Reply line 7: the SEARCH block"):
        parse_reply(reply)


@pytest.mark.parametrize(
    "reply",
    [
        "<think>\nStill weighing depth against width; if I add a layer then",  # cut off, never closed
        "  <thinking>\nweighing</thinking>\n\n",
        "<think>a</think><reasoning>b</reasoning>",
    ],
)
def test_a_reply_of_only_reasoning_says_the_answer_never_came(reply):
    with pytest.raises(ProposalError, match=r"^The reply holds only reasoning \(a <think> block\)"):
        parse_reply(reply)


def test_an_unclosed_think_at_the_start_hides_the_drafts_after_it():
    with pytest.raises(ProposalError, match="holds only reasoning"):
        parse_reply(f"<think>\nmaybe:\n<hypothesis>draft</hypothesis>\n{BLOCK}")


def test_a_markdown_hypothesis_keeps_its_code_spans_and_a_rationale_stops_at_a_rule():
    reply = (
        "## Hypothesis\n**`evaluate()` should run the model**\n\n## Rationale\nA constant gives no signal."
        f"\n\n---\n\nThanks!\n{BLOCK}"
    )
    parsed = parse_reply(reply)
    assert (parsed.hypothesis, parsed.rationale) == (
        "`evaluate()` should run the model",
        "A constant gives no signal.",
    )
