"""The ``local`` backend: runs a phase as a contained subprocess on this machine.

NOT A SECURITY BOUNDARY. This backend does not isolate the network or the filesystem: the program runs
as the harness's own user, can open any path that user can (including the original data shards behind
the per-phase data directory, and the harness's code), and can reach the network. It is for trusted
code and development; run untrusted candidates with the ``docker`` backend.

What it does provide:
- a fresh temporary directory per phase (working directory, HOME, TMPDIR) removed afterwards, and a
  per-phase data directory that lists only the shards and tokenizer the phase may read (the contract's
  ``DATA_PATH``), so an honest program cannot read validation data while training by accident;
- a scrubbed environment: the contract's variables, the knobs and a minimal base, nothing inherited
  (no API keys);
- resource limits on the program (address space, processes, open files, file size, no core dumps);
- containment (see ``sandbox.containment``): a PID namespace and a cgroup where the machine allows them,
  so that a timeout, a stop request or the program's own exit kills everything it started, including
  children that detached with setsid, and a fork bomb stays bounded;
- a log capped at ``limits.max_log_bytes`` (head and tail kept) that never blocks the program.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sandbox.backend import Backend, PhaseInvocation, PhaseOutcome
from sandbox.containment import (
    MARKER_VARIABLE,
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
from sandbox.errors import SandboxUnavailable
from sandbox.logcap import CappedLog, drain_pipe
from sandbox.spec import Limits, Phase

log = logging.getLogger(__name__)

INIT_SHIM = Path(__file__).with_name("init_shim.py")
POLL_SECONDS = 0.1
# Strings in the last part of a log that mean the program ran out of memory: Python's own
# MemoryError, and PyTorch's CUDA allocator error (torch.OutOfMemoryError, "CUDA out of memory").
OOM_LOG_SIGNS = (b"MemoryError", b"OutOfMemoryError", b"CUDA out of memory")
OOM_LOG_TAIL_BYTES = 8192
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class LocalBackend(Backend):
    """Runs phases as local subprocesses; see the module docstring for what it does and does not isolate."""

    name = "local"

    def __init__(
        self,
        containment: Containment | None = None,
        temp_root: Path | None = None,
        passthrough_env: tuple[str, ...] = (),
        term_grace_seconds: float = 3.0,
    ) -> None:
        """``passthrough_env`` names host variables to hand on (e.g. ``LD_LIBRARY_PATH`` on a GPU host)."""
        if not INIT_SHIM.is_file():
            raise SandboxUnavailable(f"{INIT_SHIM} is missing", hint="reinstall autogolf")
        self.containment = containment if containment is not None else probe_containment()
        self.temp_root = temp_root
        self.passthrough_env = passthrough_env
        self.term_grace_seconds = term_grace_seconds

    # ------------------------------------------------------------------------------------ execute

    def execute(self, invocation: PhaseInvocation, stop: threading.Event) -> PhaseOutcome:
        inv = invocation
        marker = uuid.uuid4().hex
        run_dir = Path(tempfile.mkdtemp(prefix="autogolf-local-", dir=self.temp_root))
        cgroup: RunCgroup | None = None
        try:
            for sub in ("work", "tmp", "data"):
                (run_dir / sub).mkdir()
            tokenizer = _stage_data(inv, run_dir / "data")
            inv.out_dir.mkdir(parents=True, exist_ok=True)
            if inv.phase is not Phase.EVAL:
                inv.artifact_dir.mkdir(parents=True, exist_ok=True)
            env = self._environment(inv, run_dir, tokenizer, marker)
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
            status_file = run_dir / "status.json"
            argv = self._argv(inv, status_file, cgroup)
            return self._supervise(inv, stop, argv, env, run_dir / "work", status_file, cgroup, marker)
        finally:
            if cgroup is not None:
                cgroup.remove()
            shutil.rmtree(run_dir, ignore_errors=True)

    def _supervise(
        self,
        inv: PhaseInvocation,
        stop: threading.Event,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        status_file: Path,
        cgroup: RunCgroup | None,
        marker: str,
    ) -> PhaseOutcome:
        capped = CappedLog(inv.log_path, inv.limits.max_log_bytes)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            capped.close()
            raise SandboxUnavailable(
                f"cannot start {argv[0]}: {exc}", hint="check that python and unshare are installed"
            ) from exc
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

        exit_code, died_of = _read_status(status_file)
        if proc.returncode == 125 and not status_file.exists() and not (timed_out or stopped):
            raise SandboxUnavailable(
                f"the local sandbox's init could not start the program: {_last_text(inv.log_path)}",
                hint="see the log; the probed containment was " + self.containment.describe(),
            )
        oom_kills = cgroup.oom_kills() if cgroup is not None else 0
        # The log is only a witness for a program that failed: one that exited 0 may well have
        # printed an allocator error it recovered from (e.g. while autotuning).
        oom = (
            oom_kills > 0
            or (died_of == signal.SIGKILL and not (timed_out or stopped))
            or (
                exit_code != 0
                and any(sign in _last_bytes(inv.log_path, OOM_LOG_TAIL_BYTES) for sign in OOM_LOG_SIGNS)
            )
        )
        notes = [f"containment: {self.containment.describe()}"]
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
            proc.kill()

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

    # ------------------------------------------------------------------------------- set-up

    def _environment(
        self, inv: PhaseInvocation, run_dir: Path, tokenizer: Path, marker: str
    ) -> dict[str, str]:
        python_bin = str(Path(sys.executable).parent)
        env = {
            "PATH": f"{python_bin}:{os.environ.get('PATH', DEFAULT_PATH)}",
            "HOME": str(run_dir),
            "TMPDIR": str(run_dir / "tmp"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in inv.gpus),
        }
        env.update({k: os.environ[k] for k in self.passthrough_env if k in os.environ})
        env.update(inv.knob_env)
        # The contract's variables come last so that no knob can point a phase at other data.
        env["GOLF_PHASE"] = str(inv.phase)
        env["GOLF_OUT"] = str(inv.out_dir)
        env["GOLF_ARTIFACT_DIR"] = str(inv.artifact_dir)
        env["DATA_PATH"] = str(run_dir / "data")
        env["TOKENIZER_PATH"] = str(tokenizer)
        env.pop("GOLF_CHECK_POSITIONS", None)
        if inv.check_positions_path is not None:
            env["GOLF_CHECK_POSITIONS"] = str(inv.check_positions_path)
        env[MARKER_VARIABLE] = marker
        return env

    def _argv(self, inv: PhaseInvocation, status_file: Path, cgroup: RunCgroup | None) -> list[str]:
        entry = str((inv.program_dir / inv.entry).resolve())
        if inv.nproc == 1:
            program = [sys.executable, entry]
        else:
            program = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={inv.nproc}",
                entry,
            ]
        shim = [sys.executable, "-I", "-S", str(INIT_SHIM), "--status-file", str(status_file)]
        for procs in cgroup.procs_files if cgroup is not None else []:
            shim += ["--cgroup-procs", str(procs)]
        shim += [f"--rlimit={name}={value}" for name, value in _rlimits(inv.limits, bool(inv.gpus))]
        prefix = list(self.containment.unshare_prefix or ())
        return [*prefix, *shim, "--", *program]


def _rlimits(limits: Limits, uses_gpus: bool) -> list[tuple[str, int]]:
    found = [
        ("core", 0),
        ("nofile", limits.max_open_files),
        ("fsize", limits.max_file_bytes),
    ]
    if limits.max_processes is not None:
        found.append(("nproc", limits.max_processes))
    # CUDA reserves far more virtual address space than it uses, so an address-space limit breaks
    # GPU runs; there the memory cgroup (when available) is the limit.
    if limits.memory_bytes is not None and not uses_gpus:
        found.append(("as", limits.memory_bytes))
    return found


def _stage_data(inv: PhaseInvocation, data_dir: Path) -> Path:
    """Link the phase's shards and the tokenizer into ``data_dir``; returns the tokenizer's new path."""
    names: set[str] = set()
    staged_tokenizer = data_dir / inv.tokenizer_path.name
    for source in (*inv.data_files, inv.tokenizer_path):
        if source.name in names:
            raise SandboxUnavailable(
                f"two data files are named {source.name!r}", hint="give each shard a distinct base name"
            )
        names.add(source.name)
        if not source.is_file():
            raise SandboxUnavailable(
                f"data file {source} does not exist", hint="build or fetch the data first"
            )
        target = data_dir / source.name
        # A hard link keeps the original's directory out of sight (a symlink's target names it);
        # across filesystems fall back to a symlink.
        try:
            os.link(source, target)
        except OSError:
            target.symlink_to(source.resolve())
    return staged_tokenizer


def _read_status(status_file: Path) -> tuple[int | None, int | None]:
    """(exit code, terminating signal) as the init shim recorded them; (None, None) when it could not."""
    try:
        status = json.loads(status_file.read_text())
    except (OSError, ValueError):
        return None, None
    return status.get("exit_code"), status.get("signal")


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

    The fixed cost of one phase on this machine: temp dirs, namespace, cgroup, interpreter start.
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
