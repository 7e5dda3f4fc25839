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


def test_tab_indented_search_matches_a_space_indented_file_and_replace_takes_its_unit():
    out = apply("\ta = 1\n\tb = 2\n", "\ta = 1\n\tif a:\n\t\tb = 2\n")
    assert out == TEXT.replace("    b = 2\n", "    if a:\n        b = 2\n")


def test_tabs_are_one_indent_level_of_the_files_own_unit():
    two_spaces = "def f():\n  if x:\n    y = 1\n"
    out = apply("\tif x:\n\t\ty = 1\n", "\tif x:\n\t\ty = 2\n\t  z = 3\n", two_spaces)
    assert out == "def f():\n  if x:\n    y = 2\n    z = 3\n"  # tab stops every 2 columns


def test_tab_indented_replace_under_a_space_matched_search_is_put_in_spaces():
    assert apply("    b = 2\n", "\tb = 2\n\tc = 3\n") == TEXT.replace("    b = 2\n", "    b = 2\n    c = 3\n")


def test_a_tab_indented_file_keeps_its_tabs():
    tabbed = "def f():\n\ta = 1\n\treturn a\n"
    assert apply("\ta = 1\n", "\ta = 2\n", tabbed) == "def f():\n\ta = 2\n\treturn a\n"


def test_no_match_says_what_was_allowed_for_and_never_claims_whitespace_was_ignored():
    with pytest.raises(ProposalError) as info:
        apply("\ta = 10\n\tb = 2\n", "x\n")
    message = str(info.value)
    assert message.startswith(
        "Edit block 1 of 1 (m.py): the SEARCH text does not match any part of m.py, even allowing for "
        "trailing whitespace, blank lines at its ends, a consistent indentation offset and tabs in the "
        "indentation read as 4 spaces. SEARCH must copy existing lines exactly."
    )
    assert "ignoring whitespace" not in message
    assert "only in whitespace" not in message  # 10 is not 1


def test_no_match_that_differs_only_in_whitespace_says_so():
    with pytest.raises(ProposalError) as info:
        apply("a = 1\n        b = 2\n", "x\n")  # inconsistent indentation: no offset fits both lines
    assert str(info.value).endswith(
        "2 |     a = 1\n3 |     b = 2\nThey differ from SEARCH only in whitespace at the start of or inside "
        "lines: copy them character for character."
    )


def test_elided_lines_between_the_pieces_are_kept():
    out = apply("def f():\n...\n    return a + b\n", "def f():\n...\n    return a * b\n")
    assert out == TEXT.replace("a + b", "a * b")


def test_elision_comments_and_indented_dots_count_as_elision():
    out = apply(
        "def f():\n    # ... unchanged ...\n    return a + b\n",
        "def f():\n    # ... unchanged ...\n    c = 0\n    return a + b + c\n",
    )
    assert out == TEXT.replace("    return a + b\n", "    c = 0\n    return a + b + c\n")


def test_a_later_piece_matches_at_its_first_place_after_the_piece_before():
    text = "def f():\n    x = 1\n    return x\n\n\ndef g():\n    return x\n"
    out = apply("def f():\n...\n    return x\n", "def f():\n...\n    return -x\n", text)
    assert out == text.replace("    return x\n\n", "    return -x\n\n")


def test_a_later_piece_must_follow_the_piece_before():
    with pytest.raises(ProposalError) as info:
        apply("def g():\n...\n    a = 1\n", "def g():\n...\n    a = 2\n")  # "a = 1" is in f, above g
    assert str(info.value) == (
        "Edit block 1 of 1 (m.py): the part of the SEARCH text after its first `...` line does not "
        "match any part of m.py after line 7, where the part before that `...` ends, even allowing for "
        "trailing whitespace, blank lines at its ends and a consistent indentation offset. SEARCH must "
        "copy existing lines exactly. The closest lines in m.py after it are:\n8 |     return 0"
    )


def test_the_first_piece_must_match_exactly_once():
    text = TEXT + "\ndef h():\n    return 0\n"
    with pytest.raises(
        ProposalError, match=r"part of the SEARCH text before its first `\.\.\.` matches 2 places"
    ):
        apply("    return 0\n...\n", "    return 1\n...\n", text)


def test_a_first_piece_that_matches_nowhere_is_quoted_on_its_own():
    with pytest.raises(ProposalError, match=r"before its first `\.\.\.` does not match .*\n1 | def f\(\):"):
        apply("def f(y):\n...\n    return a + b\n", "def f(y):\n...\n")


def test_elision_lines_must_pair_between_search_and_replace():
    with pytest.raises(ProposalError, match=r"SEARCH has 1 `\.\.\.` line\(s\) and REPLACE has 0"):
        apply("def f():\n...\n    return a + b\n", "def f():\n    return 0\n")
    with pytest.raises(ProposalError, match=r"REPLACE has 1 more `\.\.\.` line\(s\) than SEARCH"):
        apply("    b = 2\n", "    ...\n    b = 3\n")


def test_elision_at_both_ends_of_both_sides_only_says_the_file_goes_on():
    assert apply("...\n    b = 2\n...\n", "...\n    b = 3\n...\n") == TEXT.replace("b = 2", "b = 3")


def test_a_piece_with_no_quoted_lines_is_an_error():
    with pytest.raises(ProposalError, match=r"a `\.\.\.` line with no quoted lines on one side"):
        apply("def f():\n...\n...\n    return a + b\n", "def f():\n...\nx\n...\n    return a + b\n")


def test_a_literal_ellipsis_line_of_the_file_is_matched_as_code():
    stub = "class P:\n    def f(self):\n        ...\n"
    assert apply("    def f(self):\n        ...\n", "    def f(self):\n        return 1\n", stub) == (
        "class P:\n    def f(self):\n        return 1\n"
    )
    assert apply("        return 1\n", "        ...\n", "def f():\n        return 1\n        ...\n") == (
        "def f():\n        ...\n        ...\n"
    )


def test_line_number_prefixes_copied_from_a_quote_are_left_out():
    quoted = closest_lines(TEXT, "    a = 1\n    b = 2\n")
    assert quoted == "2 |     a = 1\n3 |     b = 2"
    out = apply(quoted + "\n", "2 |     a = 1\n3 |     b = 20\n")
    assert out == TEXT.replace("b = 2", "b = 20")
    # REPLACE without numbers, and a blank quoted line that lost its trailing space.
    out = apply(" 8 |     return 0\n 9 |\n", "    return 9\n", TEXT + "\n")
    assert out == TEXT.replace("return 0\n", "return 9\n")


def test_line_numbers_stay_when_not_every_line_has_one_or_the_file_has_such_lines():
    with pytest.raises(ProposalError, match="does not match any part"):
        apply("2 |     a = 1\n    b = 2\n", "x\n")
    numbered_file = "def f():\n    12 | flags\n    a = 1\n"
    with pytest.raises(ProposalError, match="does not match any part"):
        apply("2 |     a = 1\n", "2 |     a = 2\n", numbered_file)


def test_numbered_search_that_still_does_not_match_says_the_numbers_were_left_out():
    with pytest.raises(ProposalError) as info:
        apply("2 |     a = 5\n3 |     b = 2\n", "x\n")
    message = str(info.value)
    assert "\n2 |     a = 1\n3 |     b = 2\n" in message  # quoted against the unnumbered text
    assert message.endswith("they were left out of SEARCH before matching, and should not be copied.")
