"""Unified diffs applied with git apply --recount."""

from __future__ import annotations

import pytest

from agent.errors import AgentError, ProposalError
from agent.unified_diff import apply_unified_diff, reposition_hunks

TEXT = "".join(f"line {n}\n" for n in range(1, 21))


def test_wrong_hunk_counts_and_offsets_are_recounted():
    # The header claims line 3 and wrong counts; the hunk is really at lines 10-12.
    diff = "--- a/m.py\n+++ b/m.py\n@@ -3,7 +3,9 @@\n line 10\n-line 11\n+eleven\n line 12\n"
    out = apply_unified_diff({"m.py": TEXT, "other.py": "x\n"}, diff, path="m.py", label="Edit block 1")
    assert out["m.py"] == TEXT.replace("line 11\n", "eleven\n")
    assert out["other.py"] == "x\n"


def test_bare_hunk_separator_without_numbers_is_accepted():
    diff = "--- m.py\n+++ m.py\n@@\n line 15\n-line 16\n+sixteen\n"
    out = apply_unified_diff({"m.py": TEXT}, diff, path="m.py", label="Edit block 1")
    assert out["m.py"] == TEXT.replace("line 16\n", "sixteen\n")


def test_context_that_is_not_in_the_file_reports_git_error():
    diff = "--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,2 @@\n line 1\n-line two\n+line 2b\n"
    with pytest.raises(ProposalError, match=r"(?s)does not apply to m.py\. git apply said:\n.*patch failed"):
        apply_unified_diff({"m.py": TEXT}, diff, path="m.py", label="Edit block 1")


def test_hunks_without_trailing_context_apply_where_their_lines_are():
    # Neither hunk has trailing context and both state wrong positions; git alone would demand that
    # such hunks sit at the start/end of the file.
    diff = (
        "--- a/m.py\n+++ b/m.py\n@@ -1,3 +1,3 @@\n line 4\n-line 5\n+five\n+five b\n"
        "@@ -2 +2 @@\n line 14\n-line 15\n"
    )
    out = apply_unified_diff({"m.py": TEXT}, diff, path="m.py", label="Edit block 1")
    assert out["m.py"] == TEXT.replace("line 5\n", "five\nfive b\n").replace("line 15\n", "")


def test_missing_git_is_a_harness_fault_not_a_bad_reply(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no git
    diff = "--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-line 1\n+one\n"
    with pytest.raises(AgentError, match="need the `git` executable on PATH") as info:
        apply_unified_diff({"m.py": TEXT}, diff, path="m.py", label="Edit block 1")
    assert "install git" in info.value.hint


LUA = "".join(f"x{n} = {n}\n" for n in range(1, 11)) + "-- a/b is the ratio\n" + "y = 2\n"


def test_removed_comment_line_in_a_diff_without_a_b_prefixes_is_not_taken_for_a_header():
    # "-- a/b ..." removed gives "--- a/b ..." in the hunk; only the real header decides -p0 vs -p1.
    diff = "--- m.lua\n+++ m.lua\n@@ -11 +10,0 @@\n--- a/b is the ratio\n"
    out = apply_unified_diff({"m.lua": LUA}, diff, path="m.lua", label="Edit block 1")
    assert out["m.lua"] == LUA.replace("-- a/b is the ratio\n", "")


def test_a_hunk_starting_with_a_removed_dash_dash_line_is_repositioned_whole():
    diff = "--- a/m.lua\n+++ b/m.lua\n@@\n--- a/b is the ratio\n y = 2\n"
    assert reposition_hunks(diff, LUA).split("\n")[2] == "@@ -11,2 +11,1 @@"
    out = apply_unified_diff({"m.lua": LUA}, diff, path="m.lua", label="Edit block 1")
    assert out["m.lua"] == LUA.replace("-- a/b is the ratio\n", "")


def test_removed_and_added_lines_that_look_like_headers_are_applied_as_body():
    diff = (
        "--- a/m.lua\n+++ b/m.lua\n@@ -10,2 +10,2 @@\n x10 = 10\n--- a/b is the ratio\n+++ c/d is the ratio\n"
    )
    out = apply_unified_diff({"m.lua": LUA}, diff, path="m.lua", label="Edit block 1")
    assert out["m.lua"] == LUA.replace("-- a/b is the ratio\n", "++ c/d is the ratio\n")
