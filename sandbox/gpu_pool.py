"""Handing out GPUs to concurrent runs: k per run, first come first served.

One 8-GPU machine can hold eight 1-GPU proxy trials or one 8-GPU full trial. Requests are served
strictly in arrival order: a waiting 8-GPU request blocks later 1-GPU requests until it is served,
so a stream of small trials cannot starve a full one (the usual head-of-line trade-off: a little idle
capacity for fairness).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Sequence
from types import TracebackType


class Lease:
    """GPUs held by one run; release them with :meth:`release` or by leaving the ``with`` block."""

    def __init__(self, pool: GpuPool, slots: tuple[int, ...], gpus: tuple[int, ...]) -> None:
        self._pool = pool
        self._slots = slots
        self.gpus = gpus  # what to put in RunSpec.gpus (empty for a CPU pool)
        self._released = False

    @property
    def size(self) -> int:
        return len(self._slots)

    def release(self) -> None:
        """Give the GPUs back; calling it again does nothing."""
        if not self._released:
            self._released = True
            self._pool._give_back(self._slots)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Lease(gpus={self.gpus}, slots={len(self._slots)}, released={self._released})"


class GpuPool:
    """A thread-safe pool of GPU indices (or, via :meth:`cpu`, of anonymous CPU slots)."""

    def __init__(self, gpu_indices: Sequence[int], *, cpu_only: bool = False) -> None:
        indices = [int(i) for i in gpu_indices]
        if len(set(indices)) != len(indices):
            raise ValueError(f"GPU indices must be distinct, got {indices}")
        if not indices:
            raise ValueError("a GpuPool needs at least one GPU index (use GpuPool.cpu(slots) for CPU runs)")
        self._cpu_only = cpu_only
        self._order = {gpu: position for position, gpu in enumerate(indices)}
        self._free: set[int] = set(indices)
        self._total = len(indices)
        self._queue: deque[int] = deque()  # ticket numbers of waiting requests, oldest first
        self._tickets = itertools.count()
        self._changed = threading.Condition(threading.Lock())

    @classmethod
    def cpu(cls, slots: int) -> GpuPool:
        """A pool that hands out empty GPU tuples but still admits at most ``slots`` runs at once."""
        if slots < 1:
            raise ValueError(f"a CPU pool needs at least one slot, got {slots}")
        return cls(range(slots), cpu_only=True)

    @property
    def total(self) -> int:
        return self._total

    @property
    def free(self) -> int:
        with self._changed:
            return len(self._free)

    @property
    def waiting(self) -> int:
        """Requests waiting for their GPUs (first come, first served)."""
        with self._changed:
            return len(self._queue)

    def acquire(self, k: int = 1, timeout: float | None = None) -> Lease:
        """Wait until ``k`` GPUs are free and it is this request's turn; return the lease.

        Raises ``ValueError`` when ``k`` is outside ``1..total`` (it could never be served) and
        ``TimeoutError`` when ``timeout`` seconds pass first.
        """
        if not 1 <= k <= self._total:
            raise ValueError(f"cannot lease {k} GPU(s) from a pool of {self._total}")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            ticket = next(self._tickets)
            self._queue.append(ticket)
            try:
                while not (self._queue[0] == ticket and len(self._free) >= k):
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(
                            f"no {k} GPU(s) came free within {timeout} s ({len(self._free)} free)"
                        )
                    self._changed.wait(remaining)
                # Lowest indices first, so a run's GPUs are adjacent where the pool allows.
                slots = tuple(sorted(self._free, key=self._order.__getitem__)[:k])
                self._free.difference_update(slots)
            finally:
                self._queue.remove(ticket)
                # The head of the queue changed (served, or gave up): let the next request look.
                self._changed.notify_all()
        return Lease(self, slots, () if self._cpu_only else slots)

    def _give_back(self, slots: tuple[int, ...]) -> None:
        with self._changed:
            self._free.update(slots)
            self._changed.notify_all()
