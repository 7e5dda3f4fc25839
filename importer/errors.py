"""The importer's one error: a record that cannot be read as it stands.

A subclass of :class:`autogolf.errors.GolfError`, so the command line prints it (message and hint, no
traceback) like every other input fault; a ``ValueError`` too, as bad input is.
"""

from __future__ import annotations

from autogolf.errors import GolfError


class RecordImportError(GolfError, ValueError):
    """A record folder or program that cannot be imported; the message names the file and the problem."""
