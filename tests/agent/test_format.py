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
    reply = f'<hypothesis>h</hypothesis>\n<edit path="x.py">\n{BLOCK}</edit>\nprose\n=======\n'
    with pytest.raises(ProposalError, match=r"^Reply line 10: `=======` appears without"):
        parse_reply(reply)
