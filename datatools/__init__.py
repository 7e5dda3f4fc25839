"""Challenge-format data: fetch the official shards, or build shards and a tokenizer from local text.

``autogolf data`` and ``python -m datatools.prepare`` drive it; the embedded demo corpus lives here too.
Kept apart from ``baseline/``, which holds only the program the agent edits.
"""
