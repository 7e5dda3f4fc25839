"""A hash of a program that ignores what cannot change its behaviour: comments, blank lines, spacing.

Two candidates with the same normalized hash are the same experiment; the agent refuses to propose
one twice and the controller uses the same function to recognise re-runs.
"""

from __future__ import annotations

import hashlib
import io
import tokenize

# Tokens that carry no behaviour. INDENT/DEDENT are kept as markers (their width is dropped), so
# re-indenting a block by a different amount hashes the same but moving code between blocks does not.
_DROPPED = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}


def normalized_source_hash(text: str) -> str:
    """sha256 hex digest of ``text``'s Python token stream without comments, blank lines or spacing.

    Source that does not tokenize (it would not run either) is hashed line by line with trailing
    whitespace and blank lines removed, so the function never raises on bad input.
    """
    text = text.replace("\r\n", "\n")
    parts: list[str] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in _DROPPED:
                continue
            if token.type == tokenize.INDENT:
                parts.append("<INDENT>")
            elif token.type == tokenize.DEDENT:
                parts.append("<DEDENT>")
            elif token.type == tokenize.NEWLINE:
                parts.append("<NEWLINE>")
            else:
                parts.append(token.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        parts = ["<UNTOKENIZABLE>"] + [line.rstrip() for line in text.splitlines() if line.strip()]
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()
