"""Keeping track of, bounding and killing every process a local run starts.

Three mechanisms, probed once per backend and used together where the machine allows them:

1. A PID namespace (``unshare --pid --fork --kill-child``, with ``--user --map-root-user`` when not
   root, and ``--mount --mount-proc`` where allowed, so that an unconfined program gets a /proc of its
   own namespace too). Its init is ``sandbox/backends/init_shim.py``; when the init dies the kernel kills
   everything in the namespace, so setsid-detached children cannot outlive the run. See
   pid_namespaces(7).
2. A cgroup (v2, or v1 ``pids`` and ``memory`` hierarchies) per run: ``pids.max`` bounds a fork bomb
   even for root (RLIMIT_NPROC is not enforced for root), ``memory.max`` bounds resident memory
   (unlike RLIMIT_AS it does not break CUDA's large virtual mappings), and its OOM-kill counter tells
   an out-of-memory kill from any other SIGKILL.
3. Always: a marker variable in the environment of the run's first process, inherited by everything
   it starts; a scan of /proc finds and kills what is left. A program that wipes its environment
   escapes this scan, which is why 1 and 2 come first.

Confinement (what the program can see and write: ``sandbox.backends.confinement``) is probed with them and
recorded here, so that :meth:`Containment.describe` names everything a phase ran under.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.backends.confinement import Bwrap, Isolation, probe_bwrap

log = logging.getLogger(__name__)

MARKER_VARIABLE = "AUTOGOLF_RUN_MARKER"
CGROUP_ROOT = Path("/sys/fs/cgroup")


# --------------------------------------------------------------------------------------------- /proc


def read_stat_fields(pid: int) -> list[bytes] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    fields = read_stat_fields(pid)
    return fields is not None and fields[0] != b"Z"


def parent_of(pid: int) -> int | None:
    fields = read_stat_fields(pid)
    return int(fields[1]) if fields is not None else None


def children_of(pid: int) -> list[int]:
    return [p for p in _all_pids() if parent_of(p) == pid and is_running(p)]


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def pids_with_marker(marker: str) -> list[int]:
    """Live processes whose environment holds ``MARKER_VARIABLE=marker``."""
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    found = []
    for pid in _all_pids():
        if pid == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and is_running(pid):
            found.append(pid)
    return found


def send_signal(pids: list[int] | set[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


# ------------------------------------------------------------------------------------------- cgroups


@dataclass
class RunCgroup:
    """The cgroup directories of one run (one on v2; one per controller hierarchy on v1)."""

    version: int
    dirs: dict[str, Path]  # controller ("pids", "memory", or "unified" on v2) -> directory

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs.values()]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for procs in self.procs_files:
            with contextlib.suppress(OSError):
                found.update(int(line) for line in procs.read_text().split())
        return {p for p in found if is_running(p)}

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer killed in this group."""
        if self.version == 2:
            events = self.dirs["unified"] / "memory.events"
        elif "memory" in self.dirs:
            events = self.dirs["memory"] / "memory.oom_control"
        else:
            return 0
        with contextlib.suppress(OSError):
            for line in events.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self) -> None:
        for directory in self.dirs.values():
            try:
                directory.rmdir()
            except OSError as exc:
                log.warning("could not remove cgroup %s: %s", directory, exc)


def _own_cgroup_paths() -> dict[str, str]:
    """This process's cgroup path per hierarchy: {"pids": "/x", ..., "": "/y" for v2}."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller.removeprefix("name=")] = path
    return paths


@dataclass(frozen=True)
class CgroupPlan:
    """Where run cgroups are made and which controllers they get."""

    version: int
    parents: dict[str, Path]  # key as in RunCgroup.dirs -> parent directory

    def create(self, max_processes: int | None, memory_bytes: int | None) -> RunCgroup:
        name = f"autogolf-{uuid.uuid4().hex[:12]}"
        dirs: dict[str, Path] = {}
        try:
            for key, parent in self.parents.items():
                directory = parent / name
                directory.mkdir()
                dirs[key] = directory
            group = RunCgroup(self.version, dirs)
            if self.version == 2:
                unified = dirs["unified"]
                if max_processes is not None:
                    (unified / "pids.max").write_text(str(max_processes))
                if memory_bytes is not None:
                    (unified / "memory.max").write_text(str(memory_bytes))
                    # No swap: a run over its memory is killed, not slowed to a crawl.
                    with contextlib.suppress(OSError):
                        (unified / "memory.swap.max").write_text("0")
            else:
                if max_processes is not None and "pids" in dirs:
                    (dirs["pids"] / "pids.max").write_text(str(max_processes))
                if memory_bytes is not None and "memory" in dirs:
                    (dirs["memory"] / "memory.limit_in_bytes").write_text(str(memory_bytes))
            return group
        except OSError:
            RunCgroup(self.version, dirs).remove()
            raise


def _probe_cgroup_v2(own: dict[str, str]) -> CgroupPlan | None:
    if not (CGROUP_ROOT / "cgroup.controllers").exists() or "" not in own:
        return None
    parent = CGROUP_ROOT / own[""].lstrip("/")
    try:
        available = set((parent / "cgroup.controllers").read_text().split())
        if not {"pids", "memory"} <= available:
            return None
        enabled = set((parent / "cgroup.subtree_control").read_text().split())
        if not {"pids", "memory"} <= enabled:
            # Fails with EBUSY when this process's own group holds processes and is not the root
            # (cgroup v2's no-internal-processes rule); we do not move ourselves to work around it.
            (parent / "cgroup.subtree_control").write_text("+pids +memory")
    except OSError as exc:
        log.info("cgroup v2 at %s not usable: %s", parent, exc)
        return None
    return CgroupPlan(2, {"unified": parent})


def _probe_cgroup_v1(own: dict[str, str]) -> CgroupPlan | None:
    parents = {}
    for controller in ("pids", "memory"):
        hierarchy = CGROUP_ROOT / controller
        if controller in own and (hierarchy / "cgroup.procs").exists():
            parents[controller] = hierarchy / own[controller].lstrip("/")
    if "pids" not in parents:
        return None
    return CgroupPlan(1, parents)


def probe_cgroups() -> CgroupPlan | None:
    """A plan that has been tried (a group made, limited and removed), or None."""
    try:
        own = _own_cgroup_paths()
    except OSError:
        return None
    for plan in (_probe_cgroup_v2(own), _probe_cgroup_v1(own)):
        if plan is None:
            continue
        try:
            plan.create(max_processes=64, memory_bytes=1 << 30).remove()
        except OSError as exc:
            log.info("cgroup v%d not writable here: %s", plan.version, exc)
            continue
        return plan
    return None


# ------------------------------------------------------------------------------------ PID namespaces


def probe_pid_namespace(timeout_seconds: float = 10.0) -> tuple[str, ...] | None:
    """The ``unshare`` prefix that puts a command in a new PID namespace here, or None.

    Prefixes that also mount a /proc of the new namespace are preferred: without one, an unconfined
    program reads the host's /proc, and with it every process's environment its user may read.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    pid_ns = (unshare, "--pid", "--fork", "--kill-child")
    # Without root, a user namespace (mapping us to root inside) grants the right to make the PID one.
    user_ns = (unshare, "--user", "--map-root-user", "--pid", "--fork", "--kill-child")
    bases = [pid_ns, user_ns] if os.geteuid() == 0 else [user_ns]
    own_proc = ("--mount", "--mount-proc")
    prefixes = [prefix for base in bases for prefix in ((*base, *own_proc), base)]
    # ``read`` is a shell builtin, so /proc/self is the shell itself: pid 1 only in a /proc of its own.
    script = "echo $$; read pid rest < /proc/self/stat; echo $pid"
    for prefix in prefixes:
        try:
            result = subprocess.run(
                [*prefix, "sh", "-c", script],
                capture_output=True,
                timeout=timeout_seconds,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.info("%s failed: %s", " ".join(prefix), exc)
            continue
        lines = result.stdout.split()
        wanted = [b"1", b"1"] if "--mount-proc" in prefix else [b"1"]
        if result.returncode == 0 and lines[: len(wanted)] == wanted:
            return prefix
        log.info("%s not usable: %s", " ".join(prefix), result.stderr.decode(errors="replace").strip())
    return None


# ------------------------------------------------------------------------------------------ summary


@dataclass(frozen=True)
class Containment:
    """What this machine allows, probed once: the mechanisms a :class:`LocalBackend` uses."""

    unshare_prefix: tuple[str, ...] | None
    cgroups: CgroupPlan | None
    bwrap: Bwrap | None = None  # confinement (sandbox.backends.confinement); None: the program is unconfined
    unconfined_because: str = ""  # why bwrap is not used, when it is not
    is_root: bool = field(default_factory=lambda: os.geteuid() == 0)

    @property
    def isolation(self) -> Isolation:
        return Isolation.CONFINED if self.bwrap is not None else Isolation.UNCONFINED

    @property
    def own_proc(self) -> bool:
        """Whether the program sees a /proc of its own PID namespace, not the host's."""
        return self.bwrap is not None or "--mount-proc" in (self.unshare_prefix or ())

    @property
    def bounds_processes(self) -> bool:
        """Whether a fork bomb is held to ``limits.max_processes`` (RLIMIT_NPROC binds only non-root)."""
        return self.cgroups is not None or not self.is_root

    def describe(self) -> str:
        if self.bwrap is not None:
            parts = ["confined(bwrap)"]
        else:
            # Said first and in capitals: an unconfined phase may read and write whatever its user can.
            proc = "own /proc" if self.own_proc else "host /proc"
            why = f"; {self.unconfined_because}" if self.unconfined_because else ""
            parts = [f"UNCONFINED({proc}{why})"]
        if self.unshare_prefix is not None:
            user = "+user" if "--user" in self.unshare_prefix else ""
            parts.append(f"pid-namespace{user}")
        if self.cgroups is not None:
            controllers = ",".join(self.cgroups.parents) if self.cgroups.version == 1 else "pids,memory"
            parts.append(f"cgroup-v{self.cgroups.version}({controllers})")
        parts.append("subreaper+marker-scan" if self.unshare_prefix is None else "marker-scan")
        return "+".join(parts)


def probe_containment() -> Containment:
    bwrap = probe_bwrap()
    found = Containment(
        unshare_prefix=probe_pid_namespace(),
        cgroups=probe_cgroups(),
        bwrap=bwrap.bwrap,
        unconfined_because=bwrap.problem,
    )
    log.info("local sandbox containment: %s", found.describe())
    return found


def terminate_signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
