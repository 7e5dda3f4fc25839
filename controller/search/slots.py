"""Slots for the loop's trials, with one trial staged ahead of them.

A trial's worker asks the study and writes its program *before* it waits for a slot (its GPUs, or a
CPU slot), so a slot that comes free starts the next run at once instead of after an ask that waits
on another trial's recording (bench/loop_duty_cycle.py: steady duty cycle 0.91 -> 0.99 on 2 s runs).
A tuning trial's knob preflight waits for the slot: a CPU smoke run beside a run would slow it. At most one trial is staged that way at a time: the main loop waits for
the staging place before it starts a worker. When the loop ends on its own (a budget), a staged
trial still runs: it was asked, so the trial budget already counts it.

A staged trial that is still waiting when the user stops the campaign does not run; its worker hands
it back (the loop fails and re-queues it, so the next start runs it first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sandbox import GpuPool
from sandbox.gpu_pool import Lease

POLL_SECONDS = 0.5  # how often a waiter looks at the stop flag


class SlotGate:
    """The loop's slot pool plus its one staging place."""

    def __init__(self, pool: GpuPool, user_stopped: Callable[[], bool]) -> None:
        self.pool = pool
        self.user_stopped = user_stopped
        self._staging = threading.Semaphore(1)

    def stage(self, gpus: int, use_gpus: bool) -> SlotTicket | None:
        """Wait for the staging place; None when the user stopped first."""
        while not self._staging.acquire(timeout=POLL_SECONDS):
            if self.user_stopped():
                return None
        if self.user_stopped():
            self.unstage()
            return None
        return SlotTicket(self, gpus, use_gpus)

    def unstage(self) -> None:
        """Give the staging place back (once per :meth:`stage` that returned a ticket)."""
        self._staging.release()


class SlotTicket:
    """One trial's way to its slot: :meth:`take` once its program is ready, :meth:`free` after the
    run, :meth:`close` when the worker ends (whatever happened)."""

    def __init__(self, gate: SlotGate, gpus: int, use_gpus: bool) -> None:
        self._gate = gate
        self._gpus = gpus
        self._use_gpus = use_gpus
        self._staged = True
        self._lease: Lease | None = None
        self._lock = threading.Lock()

    def take(self) -> tuple[int, ...] | None:
        """Wait for a slot and leave the staging place; return the run's GPUs (empty on CPU), or None
        when the user stopped the campaign first (the trial must not start)."""
        try:
            while True:
                try:
                    lease = self._gate.pool.acquire(self._gpus, timeout=POLL_SECONDS)
                    break
                except TimeoutError:
                    if self._gate.user_stopped():
                        return None
            with self._lock:
                self._lease = lease
            if self._gate.user_stopped():  # the stop came as the slot freed: start nothing new
                self.free()
                return None
            return lease.gpus if self._use_gpus else ()
        finally:
            self._unstage()

    def free(self) -> None:
        """Give the slot back (the run is over; recording needs no slot)."""
        with self._lock:
            lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()

    def close(self) -> None:
        self._unstage()
        self.free()

    def _unstage(self) -> None:
        with self._lock:
            staged, self._staged = self._staged, False
        if staged:
            self._gate.unstage()
