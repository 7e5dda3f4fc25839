"""The normalized source hash: blind to comments and spacing, sensitive to behaviour."""

from __future__ import annotations

from agent.hashing import normalized_source_hash

SOURCE = "def f(x):\n    return x + 1\n"


def test_comments_blank_lines_and_spacing_do_not_change_the_hash():
    noisy = "# header\n\ndef f( x ):   # why\n\n\n        return x+1   \n"
    assert normalized_source_hash(noisy) == normalized_source_hash(SOURCE)
    assert normalized_source_hash(SOURCE.replace("\n", "\r\n")) == normalized_source_hash(SOURCE)


def test_a_changed_constant_or_string_changes_the_hash():
    assert normalized_source_hash(SOURCE.replace("1", "2")) != normalized_source_hash(SOURCE)
    assert normalized_source_hash('s = "# not a comment"\n') != normalized_source_hash('s = ""\n')


def test_moving_a_line_out_of_its_block_changes_the_hash():
    inside = "if a:\n    b()\n    c()\n"
    outside = "if a:\n    b()\nc()\n"
    assert normalized_source_hash(inside) != normalized_source_hash(outside)


def test_untokenizable_source_still_hashes():
    assert normalized_source_hash("def f(:\n  '''\n") != normalized_source_hash("def f(:\n")
