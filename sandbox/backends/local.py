"""The ``local`` backend: runs a phase as a contained subprocess on this machine, confined where it can.

Two modes, chosen by probing once (``LocalBackend.isolation``, named in every phase's notes):

``confined`` (bubblewrap works here; the default): a boundary for untrusted code. The program runs in
its own PID namespace with its own /proc (no harness process, no harness environment), without network
(loopback only), in new IPC/UTS/cgroup namespaces, with every capability dropped, over a read-only
view of the system and Python directories only (not the repository, not any runs folder, not the home
directory) and the same /golf layout the Docker backend shows (``sandbox.backends.view``): program, shards,
tokenizer and check positions read-only, each shard its own bind (no links to write through), the
artifact writable only outside eval, and private /golf/work, /golf/home, /tmp and /dev/shm that are
gone after the phase, so nothing can be stashed for a later phase outside the counted artifact. What
it does not do: limit GPU access to the phase's GPUs beyond CUDA_VISIBLE_DEVICES (every NVIDIA node
is shown to a GPU phase), or hide the machine's hardware under /sys (GPU phases only).

``unconfined`` (no working bwrap): NOT A SECURITY BOUNDARY; for trusted code and development. The
program runs as the harness's user and can open any path that user can (the original data behind the
per-phase data folder, which are hard links to it; the harness's code; other phases' folders) and can
reach the network. Where ``unshare --mount --mount-proc`` works it gets a /proc of its own, so it
cannot read other processes' environments. A campaign with an LLM proposer refuses to use it unless
told to (``[sandbox] allow_unconfined_local``).

In both modes:
- a scrubbed environment: the contract's variables, the knobs and a minimal base, nothing inherited
  (no API keys);
- resource limits on the program (address space, processes, open files, file size, no core dumps);
- containment (see ``sandbox.backends.containment``): a PID namespace and a cgroup where the machine allows them,
  so that a timeout, a stop request or the program's own exit kills everything it started, including
  children that detached with setsid, and a fork bomb stays bounded;
- a log capped at ``limits.max_log_bytes`` (head and tail kept) that never blocks the program.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sandbox.backends.base import Backend, PhaseInvocation, PhaseOutcome
from sandbox.backends.confinement import Isolation, read_bwrap_status
from sandbox.backends.containment import (
    Containment,
    RunCgroup,
    children_of,
    is_running,
    parent_of,
    pids_with_marker,
    probe_containment,
    send_signal,
    terminate_signal_name,
)
from sandbox.backends.local_launch import INIT_SHIM, Launch, prepare_launch
from sandbox.backends.logcap import CappedLog, drain_pipe
from sandbox.errors import SandboxUnavailable
from sandbox.spec import Limits, Phase

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
# Strings in the last part of a log that mean the program ran out of memory: Python's own
# MemoryError, and PyTorch's CUDA allocator error (torch.OutOfMemoryError, "CUDA out of memory").
OOM_LOG_SIGNS = (b"MemoryError", b"OutOfMemoryError", b"CUDA out of memory")
OOM_LOG_TAIL_BYTES = 8192


class LocalBackend(Backend):
    """Runs phases as local subprocesses; see the module docstring for what each mode isolates."""

    name = "local"

    def __init__(
        self,
        containment: Containment | None = None,
        temp_root: Path | None = None,
        passthrough_env: tuple[str, ...] = (),
        term_grace_seconds: float = 3.0,
    ) -> None:
        """``passthrough_env`` names host variables to hand on (e.g. ``LD_LIBRARY_PATH`` on a GPU host).

        ``containment`` defaults to what :func:`probe_containment` finds: confined (bwrap) wherever
        bwrap works here.
        """
        if not INIT_SHIM.is_file():
            raise SandboxUnavailable(f"{INIT_SHIM} is missing", hint="reinstall autogolf")
        self.containment = containment if containment is not None else probe_containment()
        self.temp_root = temp_root
        self.passthrough_env = passthrough_env
        self.term_grace_seconds = term_grace_seconds

    @property
    def isolation(self) -> Isolation:
        """``confined`` (a boundary for untrusted code) or ``unconfined`` (trusted code only)."""
        return self.containment.isolation

    # ------------------------------------------------------------------------------------ execute

    def execute(self, invocation: PhaseInvocation, stop: threading.Event) -> PhaseOutcome:
        inv = invocation
        marker = uuid.uuid4().hex
        run_dir = Path(tempfile.mkdtemp(prefix="autogolf-local-", dir=self.temp_root))
        cgroup: RunCgroup | None = None
        try:
            if self.containment.cgroups is not None:
                try:
                    cgroup = self.containment.cgroups.create(
                        inv.limits.max_processes, inv.limits.memory_bytes
                    )
                except OSError as exc:
                    raise SandboxUnavailable(
                        f"cannot create the run's cgroup: {exc}",
                        hint="check /sys/fs/cgroup is writable, or give LocalBackend a Containment with cgroups=None",
                    ) from exc
            launch = prepare_launch(
                inv,
                run_dir,
                containment=self.containment,
                cgroup=cgroup,
                marker=marker,
                passthrough_env=self.passthrough_env,
            )
            return self._supervise(inv, stop, launch, cgroup, marker)
        finally:
            if cgroup is not None:
                cgroup.remove()
            shutil.rmtree(run_dir, ignore_errors=True)

    def _supervise(
        self,
        inv: PhaseInvocation,
        stop: threading.Event,
        launch: Launch,
        cgroup: RunCgroup | None,
        marker: str,
    ) -> PhaseOutcome:
        capped = CappedLog(inv.log_path, inv.limits.max_log_bytes)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                launch.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=launch.cwd,
                env=launch.env,
                start_new_session=True,
                close_fds=True,
                pass_fds=launch.pass_fds,
            )
        except OSError as exc:
            capped.close()
            raise SandboxUnavailable(
                f"cannot start {launch.argv[0]}: {exc}", hint="check that python and unshare are installed"
            ) from exc
        finally:
            launch.close_fds()  # the child holds its own copies
        assert proc.stdout is not None
        reader_done = threading.Event()
        reader = threading.Thread(
            target=drain_pipe, args=(proc.stdout.fileno(), capped, reader_done), daemon=True
        )
        reader.start()

        timed_out = stopped = False
        try:
            while proc.poll() is None:
                if stop.is_set():
                    stopped = True
                    break
                if time.monotonic() - start > inv.wall_timeout_seconds:
                    timed_out = True
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=POLL_SECONDS)
        except BaseException:  # e.g. KeyboardInterrupt in the caller's thread: the run must not outlive it
            self._terminate(proc, cgroup, marker)
            proc.wait()
            self._sweep(cgroup, marker)
            reader_done.set()
            capped.close()
            raise
        if timed_out or stopped:
            self._terminate(proc, cgroup, marker)
        proc.wait()
        wall_seconds = time.monotonic() - start
        leftovers = self._sweep(cgroup, marker)

        reader_done.set()
        reader.join(timeout=5.0)
        proc.stdout.close()
        capped.close()

        killed_by_us = timed_out or stopped
        exit_code, died_of = _read_status(launch.status_file)
        if proc.returncode == 125 and not launch.status_file.exists() and not killed_by_us:
            raise SandboxUnavailable(
                f"the local sandbox's init could not start the program: {_last_text(inv.log_path)}",
                hint="see the log; the probed containment was " + self.containment.describe(),
            )
        if launch.bwrap_status_file is not None:
            # bwrap writes "exit-code" only once the sandbox is set up and the program has started.
            started = "exit-code" in read_bwrap_status(launch.bwrap_status_file)
            if exit_code is not None and not started and not killed_by_us:
                raise SandboxUnavailable(
                    f"bwrap could not set up the {inv.phase} sandbox: {_last_text(inv.log_path)}",
                    hint="see the log; install bubblewrap >= 0.4 (apt-get install bubblewrap), "
                    "or give LocalBackend a Containment with bwrap=None",
                )
            exit_code, died_of = _unwrap_bwrap_status(exit_code, died_of)
        oom_kills = cgroup.oom_kills() if cgroup is not None else 0
        # The log is only a witness for a program that failed: one that exited 0 may well have
        # printed an allocator error it recovered from (e.g. while autotuning).
        oom = (
            oom_kills > 0
            or (died_of == signal.SIGKILL and not killed_by_us)
            or (
                exit_code != 0
                and any(sign in _last_bytes(inv.log_path, OOM_LOG_TAIL_BYTES) for sign in OOM_LOG_SIGNS)
            )
        )
        notes = [f"isolation: {self.isolation}", f"containment: {self.containment.describe()}"]
        if died_of is not None:
            notes.append(f"killed by {terminate_signal_name(died_of)}")
        if oom_kills:
            notes.append(f"cgroup oom_kill={oom_kills}")
        if leftovers:
            notes.append(f"killed {leftovers} leftover process(es)")
        if capped.truncated:
            notes.append(f"log: {capped.omitted_bytes} bytes omitted")
        return PhaseOutcome(
            exit_code=exit_code,
            wall_seconds=wall_seconds,
            timed_out=timed_out,
            stopped=stopped,
            oom=oom,
            log_truncated=capped.truncated,
            detail="; ".join(notes),
        )

    # --------------------------------------------------------------------------------- killing

    def _namespace_init(self, proc: subprocess.Popen[bytes]) -> int | None:
        """Host pid of the PID namespace's init (the shim), the only child ``unshare`` forks."""
        if self.containment.unshare_prefix is None:
            return None
        children = children_of(proc.pid)
        return children[0] if children else None

    def _run_pids(self, cgroup: RunCgroup | None, marker: str) -> set[int]:
        pids = set(pids_with_marker(marker))
        if cgroup is not None:
            pids |= cgroup.pids()
        return pids

    def _terminate(self, proc: subprocess.Popen[bytes], cgroup: RunCgroup | None, marker: str) -> None:
        """SIGTERM to everything the run started, a grace period, then SIGKILL to whatever is left."""
        init = self._namespace_init(proc)
        if self.containment.bwrap is not None:
            # Only the program's processes carry the marker: bwrap dies of a SIGTERM and takes the
            # program with it by SIGKILL (--die-with-parent), which would leave it no grace period.
            send_signal(pids_with_marker(marker), signal.SIGTERM)
        else:
            send_signal(self._run_pids(cgroup, marker), signal.SIGTERM)  # the shim forwards it too
        deadline = time.monotonic() + self.term_grace_seconds
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS / 2)
        if proc.poll() is not None:
            return
        # Killing the namespace's init makes the kernel kill everything inside it; ``unshare`` then
        # exits once the namespace is empty. Only check the init is still unshare's child first.
        if init is not None and parent_of(init) == proc.pid:
            send_signal([init], signal.SIGKILL)
        send_signal(self._run_pids(cgroup, marker) - {proc.pid}, signal.SIGKILL)
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()  # confined, the shim's death ends bwrap and its sandbox (--die-with-parent)

    def _sweep(self, cgroup: RunCgroup | None, marker: str, limit_seconds: float = 10.0) -> int:
        """SIGKILL anything of the run still alive (detached children) until none is; returns how many."""
        killed: set[int] = set()
        deadline = time.monotonic() + limit_seconds
        while time.monotonic() < deadline:
            pids = {p for p in self._run_pids(cgroup, marker) if is_running(p)}
            if not pids:
                return len(killed)
            killed |= pids
            send_signal(pids, signal.SIGKILL)
            time.sleep(0.02)
        log.error("processes of run %s survived SIGKILL for %.0f s: %s", marker, limit_seconds, pids)
        return len(killed)


def _read_status(status_file: Path) -> tuple[int | None, int | None]:
    """(exit code, terminating signal) as the init shim recorded them; (None, None) when it could not."""
    try:
        status = json.loads(status_file.read_text())
    except (OSError, ValueError):
        return None, None
    return status.get("exit_code"), status.get("signal")


def _unwrap_bwrap_status(exit_code: int | None, died_of: int | None) -> tuple[int | None, int | None]:
    """bwrap exits ``128 + n`` when the program died of signal ``n``: report that as the signal.

    (A program that itself exits 129..192 reads the same, as it does under Docker.)
    """
    if exit_code is not None and 128 < exit_code <= 128 + 64:
        return None, exit_code - 128
    return exit_code, died_of


def _last_bytes(path: Path, n: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - n))
            return f.read()
    except OSError:
        return b""


def _last_text(path: Path) -> str:
    return _last_bytes(path, 2000).decode(errors="replace").strip()


def measure_noop_seconds(repeats: int = 5, backend: LocalBackend | None = None) -> float:
    """Median wall time (s) of a program that does nothing, through :meth:`LocalBackend.execute`.

    The fixed cost of one phase on this machine: temp dirs, namespaces, cgroup, interpreter start.
    """
    backend = backend or LocalBackend()
    times = []
    with tempfile.TemporaryDirectory(prefix="autogolf-noop-") as tmp:
        root = Path(tmp)
        (root / "prog").mkdir()
        (root / "prog" / "noop.py").write_text("pass\n")
        tokenizer = root / "tok.model"
        tokenizer.write_bytes(b"")
        for i in range(repeats):
            invocation = PhaseInvocation(
                phase=Phase.TRAIN,
                program_dir=root / "prog",
                entry="noop.py",
                data_files=(),
                tokenizer_path=tokenizer,
                artifact_dir=root / f"out{i}" / "artifact",
                out_dir=root / f"out{i}",
                log_path=root / f"out{i}" / "log.txt",
                knob_env={},
                limits=Limits(),
                wall_timeout_seconds=60.0,
            )
            begin = time.perf_counter()
            backend.execute(invocation, threading.Event())
            times.append(time.perf_counter() - begin)
    return sorted(times)[len(times) // 2]
