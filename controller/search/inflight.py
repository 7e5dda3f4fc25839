"""The in-flight ledger: plans handed out that have not finished, counted in one place.

Two counts follow a plan from the moment it is made until its trial ends, and both must come back
down exactly once whatever path the plan takes (run, give-up, stop, harness fault):

* **children per parent**: the parent choice gives a bonus to parents with few children, so a parent
  whose children are still being prepared or run must not look childless;
* **launched, not yet asked**: a plan handed to a trial thread that has not asked the study yet is not
  in the study, so the trial budget counts it here, or several slots launch past ``max_trials``.

A :class:`Reservation` holds a plan's share of each; releasing it twice is harmless, so every exit
path may release without knowing whether another already did.
"""

from __future__ import annotations

import threading
from collections import Counter


class Reservation:
    """One plan's share of the ledger. Thread-safe; each step happens at most once."""

    def __init__(self, ledger: InFlight, parent_trial: int | None) -> None:
        self._ledger = ledger
        self.parent_trial = parent_trial
        self._launched = False
        self._asked = False
        self._released = False

    def launched(self) -> None:
        """The plan went to a trial thread: count it against the budget until the study holds it."""
        with self._ledger._lock:
            if not (self._released or self._asked or self._launched):
                self._launched = True
                self._ledger._launching += 1

    def asked(self) -> None:
        """The study holds the plan's trial now (and counts it): it leaves the launch count."""
        with self._ledger._lock:
            self._asked = True
            if self._launched:
                self._launched = False
                self._ledger._launching -= 1

    def release(self) -> None:
        """The plan is done with (its trial ended, or it never became one)."""
        with self._ledger._lock:
            if self._released:
                return
            self._released = True
            if self._launched:
                self._launched = False
                self._ledger._launching -= 1
            if self.parent_trial is not None:
                self._ledger._children[self.parent_trial] -= 1
                if self._ledger._children[self.parent_trial] <= 0:
                    del self._ledger._children[self.parent_trial]


class InFlight:
    """Children per parent and launches not yet in the study, for every plan not finished."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: Counter[int] = Counter()
        self._launching = 0

    def reserve(self, parent_trial: int | None) -> Reservation:
        """A new plan's reservation; ``parent_trial`` is the parent it adds a child to, or None (the
        seed, a confirm run, a re-run of a trial the study already holds)."""
        reservation = Reservation(self, parent_trial)
        if parent_trial is not None:
            with self._lock:
                self._children[parent_trial] += 1
        return reservation

    def children(self) -> Counter[int]:
        """Children in flight per parent trial (a copy)."""
        with self._lock:
            return Counter(self._children)

    @property
    def launching(self) -> int:
        """Plans on their way to the study: launched, not asked, not released."""
        with self._lock:
            return self._launching
