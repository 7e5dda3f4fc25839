"""A log writer that keeps the head and the tail of a program's output within a byte cap.

Shared by the sandbox backends: whatever a candidate prints, the log file on disk stays at most
``max_bytes`` long and the pipe it comes from keeps being drained, so a flooding program neither blocks
on a full pipe nor fills the disk. The head (start-up, configuration) and the tail (the last traceback)
are what a reader needs; the middle is dropped with a marker saying how much was left out.
"""

from __future__ import annotations

import os
import select
import threading
from pathlib import Path
from typing import BinaryIO

# The marker is written between head and tail when bytes were dropped; room for it is reserved out of
# the tail so that the file never exceeds the cap.
_MARKER_RESERVE_BYTES = 80
_HEAD_FRACTION = 0.25


class CappedLog:
    """Writes the first quarter of ``max_bytes`` to ``path`` as it arrives and keeps a rolling tail.

    The head goes to disk immediately (so a live ``tail -f`` shows start-up output); later bytes are
    held in memory as a rolling tail of at most ``max_bytes * 3/4`` and written on :meth:`close`.
    A log shorter than the cap is kept whole, byte for byte.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        if max_bytes < 4 * _MARKER_RESERVE_BYTES:
            raise ValueError(
                f"max_log_bytes={max_bytes} is too small; use at least {4 * _MARKER_RESERVE_BYTES}"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self._head_cap = int(max_bytes * _HEAD_FRACTION)
        self._tail_cap = max_bytes - self._head_cap - _MARKER_RESERVE_BYTES
        self._file: BinaryIO = path.open("wb")
        self._head_written = 0
        self._tail = bytearray()
        self._total = 0
        self._lock = threading.Lock()
        self._closed = False

    @property
    def omitted_bytes(self) -> int:
        """Bytes that will not be in the file (0 while everything fits)."""
        return max(0, self._total - self._head_written - self._tail_cap)

    @property
    def truncated(self) -> bool:
        return self.omitted_bytes > 0

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._closed:
                raise ValueError(f"log {self.path} is closed")
            self._total += len(data)
            room = self._head_cap - self._head_written
            if room > 0:
                self._file.write(data[:room])
                self._file.flush()
                self._head_written += min(room, len(data))
                data = data[room:]
            if data:
                self._tail += data
                # Trim lazily (at twice the cap) so a flood costs amortized O(1) per byte.
                if len(self._tail) > 2 * self._tail_cap:
                    del self._tail[: len(self._tail) - self._tail_cap]

    def close(self) -> None:
        """Write the tail (with an omission marker when bytes were dropped) and close the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            tail = self._tail[-self._tail_cap :] if self._tail_cap > 0 else bytearray()
            omitted = self._total - self._head_written - len(tail)
            if omitted > 0:
                self._file.write(f"\n[... {omitted} bytes omitted ...]\n".encode())
            self._file.write(tail)
            self._file.close()

    def __enter__(self) -> CappedLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def drain_pipe(fd: int, log: CappedLog, give_up: threading.Event, chunk_bytes: int = 1 << 16) -> None:
    """Copy everything readable from ``fd`` into ``log`` until end of file.

    Polls every 0.1 s so that, once ``give_up`` is set and nothing more arrives, the loop ends even if
    some process still holds the pipe's write end open. Does not close ``fd``.
    """
    while True:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            if give_up.is_set():
                return
            continue
        try:
            data = os.read(fd, chunk_bytes)
        except OSError:
            return
        if not data:
            return
        log.write(data)
