"""What every autogolf package shares and nothing else: the error family (:mod:`autogolf.errors`).

A leaf: it imports none of ``agent``, ``sandbox``, ``datatools`` or ``controller``, so each of them
can import it without breaking DESIGN's rule that packages depend downward only.
"""

from autogolf.errors import DataError, GolfError

__all__ = ["DataError", "GolfError"]
