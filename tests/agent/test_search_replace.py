"""The matching ladder: exact, then trailing whitespace, then a consistent indentation offset."""

from __future__ import annotations

import pytest

from agent.errors import ProposalError
from agent.search_replace import apply_search_replace, closest_lines

TEXT = "def f():\n    a = 1\n    b = 2\n    return a + b\n\n\ndef g():\n    return 0\n"


def apply(search: str, replace: str, text: str = TEXT) -> str:
    return apply_search_replace(text, search, replace, path="m.py", label="Edit block 1 of 1")


def test_exact_match_replaces_only_that_place():
    assert apply("    b = 2\n", "    b = 3\n") == TEXT.replace("b = 2", "b = 3")


def test_trailing_whitespace_and_blank_edges_are_tolerated():
    assert apply("\n    a = 1   \n    b = 2\t\n\n", "    a = 5\n    b = 2\n") == TEXT.replace(
        "a = 1", "a = 5"
    )


def test_deeper_indented_search_is_matched_and_replace_dedented():
    out = apply("        a = 1\n        b = 2\n", "        a = 1\n        if a:\n            b = 2\n")
    assert out == TEXT.replace("    b = 2\n", "    if a:\n        b = 2\n")


def test_inconsistent_indentation_offset_does_not_match():
    with pytest.raises(ProposalError, match="does not match any part of m.py"):
        apply("a = 1\n        b = 2\n", "x\n")


def test_ambiguous_search_lists_every_match():
    text = TEXT + "\ndef h():\n    return 0\n"
    with pytest.raises(ProposalError, match=r"matches 2 places \(starting at lines 8, 11\)"):
        apply("    return 0\n", "    return 1\n", text)


def test_ambiguous_tolerant_match_is_also_refused():
    text = "if x:\n    y = 1\nif z:\n        y = 1\n"
    with pytest.raises(ProposalError, match="matches 2 places"):
        apply("  y = 1\n", "  y = 2\n", text)


def test_empty_search_creates_a_new_file_but_not_in_an_existing_one():
    assert apply("", "print(1)\n", text="") == "print(1)\n"
    with pytest.raises(ProposalError, match="the SEARCH text is empty"):
        apply("", "print(1)\n")


def test_closest_lines_quote_the_most_similar_window_with_numbers():
    quoted = closest_lines(TEXT, "def g(x):\n    return 1\n")
    assert quoted == "7 | def g():\n8 |     return 0"
