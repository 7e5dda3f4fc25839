"""Live progress: tail a running phase's ``curve.jsonl`` and hand each new point to the caller.

The caller's callback may answer a :class:`~sandbox.spec.StopRequest` (an Optuna pruner, the user); the
tailer then sets the stop event the backend watches, and the backend kills the run. Malformed lines are counted and skipped:
a program that writes garbage to its curve file must not be able to crash the harness.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from sandbox.outputs import parse_curve_line
from sandbox.spec import ProgressEvent, StopRequest

OnEvent = Callable[[ProgressEvent], object]

_POLL_SECONDS = 0.2
_MAX_READ_BYTES = 1 << 20  # per poll: a flooding program cannot make one poll arbitrarily slow
_MAX_LINE_BYTES = 64 * 1024  # a longer "line" is garbage, not a curve record


class CurveTailer:
    """Polls a curve file from a background thread until :meth:`finish`."""

    def __init__(self, path: Path, on_event: OnEvent | None, stop: threading.Event) -> None:
        self.path = path
        self.on_event = on_event
        self.stop = stop
        self.stop_requested_at_step: int | None = None
        self.stop_request: StopRequest | None = None
        self.malformed_lines = 0
        self.callback_error: BaseException | None = None
        self._offset = 0
        self._partial = b""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"curve-tail:{path}", daemon=True)

    def start(self) -> CurveTailer:
        if self.on_event is not None:
            self._thread.start()
        return self

    def finish(self) -> None:
        """Stop polling and deliver whatever the program wrote last."""
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.on_event is not None:
            self.poll(final=True)

    def _loop(self) -> None:
        while not self._done.wait(_POLL_SECONDS):
            self.poll()

    def poll(self, *, final: bool = False) -> None:
        if self.path.is_symlink():
            return  # a link is never read (sandbox.outputs refuses links too)
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read(_MAX_READ_BYTES)
        except OSError:
            return  # not created yet
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()  # an unfinished line waits for its newline
        if final and self._partial:
            lines.append(self._partial)
            self._partial = b""
        if len(self._partial) > _MAX_LINE_BYTES:
            self._partial = b""
            self.malformed_lines += 1
        for raw in lines:
            if not raw.strip():
                continue
            point = parse_curve_line(raw.decode("utf-8", errors="replace"))
            if point is None:
                self.malformed_lines += 1
                continue
            self._deliver(
                ProgressEvent(step=point.step, train_loss=point.train_loss, elapsed_ms=point.elapsed_ms)
            )

    def _deliver(self, event: ProgressEvent) -> None:
        if self.on_event is None or self.callback_error is not None or self.stop.is_set():
            return
        try:
            answer = self.on_event(event)
        except Exception as exc:  # the caller's bug: stop the run cleanly, re-raised by the runner
            self.callback_error = exc
            self.stop.set()
            return
        if isinstance(answer, StopRequest):
            self.stop_request, self.stop_requested_at_step = answer, event.step
            self.stop.set()
        elif answer is not None:  # a typo'd answer must not let a run the caller meant to stop go on
            self.callback_error = TypeError(
                f"the progress callback answered {answer!r}; answer a sandbox.StopRequest or None"
            )
            self.stop.set()
