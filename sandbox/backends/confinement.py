"""Confining a local phase with bubblewrap (``bwrap``): the program sees the /golf view and little else.

A confined phase runs in fresh PID, network, IPC, UTS and cgroup namespaces (and a user namespace where
one can be made), with every capability dropped, over an empty read-only root that holds only:

- read-only: the system directories (/usr, /bin, /sbin, /lib*), a short list of /etc entries (the
  dynamic loader's cache and name-service files, not /etc/shadow), and the Python installation that
  runs the harness (its prefixes and site-packages; never the autogolf repository or a runs folder);
- a /proc of its own PID namespace (no harness process, no harness environment), a minimal /dev with
  a private /dev/shm, and for GPU phases the NVIDIA device nodes and a read-only /sys;
- the phase's /golf view (``sandbox.backends.view``): program, shards, tokenizer and check positions read-only,
  artifact writable outside eval, output folder writable;
- private writable /golf/work (the working directory), /golf/home (HOME) and /tmp, each a fresh host
  folder of the phase's own, removed after it.

bwrap reports how the program ended as its own exit status (``128 + n`` for death by signal ``n``) and,
on ``--json-status-fd``, writes ``"exit-code"`` only once the sandbox was set up and the program
started: its absence tells a broken sandbox (a harness fault) from a program that failed.
See bwrap(1) and https://github.com/containers/bubblewrap.
"""

from __future__ import annotations

import functools
import glob
import json
import logging
import os
import shutil
import site
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath

from sandbox.backends.base import PhaseInvocation
from sandbox.backends.view import HOME_DIR, WORK_DIR, mount_plan
from sandbox.spec import Limits, Phase

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Enough for the dynamic loader, user and host name lookups (getpass, torchrun's "localhost"), time
# zones and TLS roots; nothing with secrets (no /etc/shadow, no gshadow, no ssh keys).
ETC_ENTRIES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "localtime",
    "alternatives",
    "ssl",
    "os-release",
)
# Control nodes CUDA opens whatever the GPU (bound where present), then one node per GPU and the MIG
# capability nodes, found by glob. CUDA_VISIBLE_DEVICES, not the nodes, picks the phase's GPUs.
NVIDIA_CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
NVIDIA_NODE_GLOBS = ("nvidia[0-9]*", "nvidia-caps/*")
# Where a user namespace can be made (root, or unprivileged user namespaces allowed), it is made, and
# the sandbox may not make further ones (bwrap >= 0.8): a program cannot build itself a namespace in
# which it holds capabilities, which keeps the kernel surface it can reach small. Elsewhere (a setuid
# bwrap without user namespaces) bwrap goes on without one.
USER_NAMESPACE_CHOICES = (("--unshare-user", "--disable-userns"), ("--unshare-user-try",))


class Isolation(StrEnum):
    """What the local backend isolates: ``confined`` (bwrap) or ``unconfined`` (trusted code only)."""

    CONFINED = "confined"
    UNCONFINED = "unconfined"


@dataclass(frozen=True)
class Bwrap:
    """A bwrap that was seen to work here, with the user-namespace flags that worked."""

    executable: str
    user_namespace: tuple[str, ...]


@dataclass(frozen=True)
class BwrapProbe:
    """The outcome of :func:`probe_bwrap`: a working :class:`Bwrap`, or why there is none."""

    bwrap: Bwrap | None
    problem: str = ""


@dataclass(frozen=True)
class Scratch:
    """The host folders behind a confined phase's private writable places (all under ``root``)."""

    root: Path
    work: Path  # /golf/work, the working directory
    home: Path  # /golf/home, HOME
    tmp: Path  # /tmp

    @classmethod
    def create(cls, root: Path) -> Scratch:
        scratch = cls(root, root / "work", root / "home", root / "tmp")
        for folder in (scratch.work, scratch.home, scratch.tmp):
            folder.mkdir()
        return scratch


# ------------------------------------------------------------------------------------------ argv


def bwrap_argv(
    bwrap: Bwrap, inv: PhaseInvocation, scratch: Scratch, *, marker: tuple[str, str], status_fd: int
) -> list[str]:
    """bwrap with every option for one phase, ending in ``--``; the program's command follows.

    ``marker`` (name, value) is set for the program only, not for bwrap itself, so a SIGTERM sent to
    the marked processes reaches the program and not the bwrap processes that would kill it at once.
    """
    argv = [
        bwrap.executable,
        *bwrap.user_namespace,
        "--unshare-pid",  # with --proc below: no harness process or environment visible
        "--unshare-net",  # no network; bwrap brings up loopback (torchrun --standalone needs it)
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",  # the init shim's death ends the sandbox (SIGKILL down the chain)
        "--new-session",  # no TIOCSTI into a terminal the harness may have
        "--cap-drop",
        "ALL",
        "--json-status-fd",
        str(status_fd),
    ]
    pythons = python_dirs()
    argv += _system_view(pythons)
    read_only = [Path(d) for d in SYSTEM_DIRS if os.path.isdir(d)] + pythons
    argv += _masks(read_only, [REPO_ROOT, inv.out_dir.parent, scratch.root])
    argv += ["--proc", "/proc", "--dev", "/dev"]
    if inv.gpus:
        for source, target in nvidia_device_nodes():
            argv += ["--dev-bind-try", str(source), str(target)]
        # CUDA's driver and NVML read the PCI topology and NUMA nodes under /sys, and NCCL builds its
        # ring and tree plans from /sys/devices; CPU phases need none of it and do not get it.
        argv += ["--ro-bind", "/sys", "/sys"]
    # multiprocessing's semaphores, DataLoader workers and NCCL's shared-memory transport need a
    # writable /dev/shm; the rest of /dev is read-only.
    argv += ["--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    for source, target, ro in mount_plan(inv):
        argv += ["--ro-bind" if ro else "--bind", str(source), str(target)]
    if inv.workdir is None:  # else mount_plan binds the kept working directory
        argv += ["--bind", str(scratch.work), str(WORK_DIR)]
    argv += ["--bind", str(scratch.home), str(HOME_DIR)]
    argv += ["--bind", str(scratch.tmp), "/tmp"]
    argv += ["--remount-ro", "/"]  # last: the empty root itself takes no files
    argv += ["--setenv", *marker, "--chdir", str(WORK_DIR), "--"]
    return argv


def _system_view(pythons: list[Path]) -> list[str]:
    """Read-only system directories, /etc entries and Python folders; symlinks stay symlinks (merged /usr)."""
    found: list[str] = []
    entries = [*SYSTEM_DIRS, *(f"/etc/{name}" for name in ETC_ENTRIES)]
    for path in entries:
        if os.path.islink(path):
            found += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            found += ["--ro-bind", path, path]
    for path in pythons:
        found += ["--ro-bind", str(path), str(path)]
    return found


def python_dirs() -> list[Path]:
    """The Python installation's folders that the system directories do not already cover."""
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()]
    candidates.append(os.path.dirname(os.path.realpath(sys.executable)))
    user_site = site.getusersitepackages()
    if site.ENABLE_USER_SITE and os.path.isdir(user_site):
        candidates.append(user_site)
    system = [Path(d).resolve() for d in SYSTEM_DIRS if os.path.isdir(d)]
    kept: list[Path] = []
    for path in sorted({Path(os.path.abspath(c)) for c in candidates if os.path.isdir(c)}):
        resolved = path.resolve()
        if any(resolved.is_relative_to(d) for d in system) or any(path.is_relative_to(k) for k in kept):
            continue
        kept.append(path)
    return kept


def user_site_base() -> str | None:
    """PYTHONUSERBASE for the program when the harness uses a user site (HOME moves in the sandbox)."""
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        return site.getuserbase()
    return None


def _masks(read_only: list[Path], hidden: list[Path]) -> list[str]:
    """An empty read-only tmpfs over each of ``hidden`` that lies inside a read-only system dir.

    Normally none does; but a Python installed under the repository's parent (or runs kept under /usr)
    would otherwise put the repository or other phases' outputs in view.
    """
    found: list[str] = []
    for path in hidden:
        resolved = path.resolve()
        if any(resolved.is_relative_to(d.resolve()) for d in read_only) and resolved.is_dir():
            found += ["--tmpfs", str(path), "--remount-ro", str(path)]
    return found


def nvidia_device_nodes(dev_root: Path = Path("/dev")) -> list[tuple[Path, PurePosixPath]]:
    """(host node, sandbox path) for every NVIDIA node: the control nodes, then those found by glob."""
    names = list(NVIDIA_CONTROL_NODES)
    for pattern in NVIDIA_NODE_GLOBS:
        names += sorted(os.path.relpath(p, dev_root) for p in glob.glob(str(dev_root / pattern)))
    return [(dev_root / name, PurePosixPath("/dev") / name) for name in dict.fromkeys(names)]


# ----------------------------------------------------------------------------------------- status


def read_bwrap_status(path: Path) -> dict[str, int]:
    """The JSON documents bwrap wrote to ``--json-status-fd``, merged ({} when there are none)."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    merged: dict[str, int] = {}
    decoder = json.JSONDecoder()
    position = 0
    while (position := _skip_space(text, position)) < len(text):
        try:
            document, position = decoder.raw_decode(text, position)
        except ValueError:
            break
        if isinstance(document, dict):
            merged.update(document)
    return merged


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


# ------------------------------------------------------------------------------------------ probe


@functools.cache
def probe_bwrap(executable: str | None = None, timeout_seconds: float = 20.0) -> BwrapProbe:
    """Whether bwrap confines a trivial program here, with the real flag set; probed once per process.

    ``executable`` defaults to ``bwrap`` on PATH. Never raises: a missing or broken bwrap comes back
    as a :class:`BwrapProbe` without one, saying why.
    """
    found = executable or shutil.which("bwrap")
    if found is None:
        return BwrapProbe(None, "bwrap is not installed (apt-get install bubblewrap)")
    problems = []
    for user_namespace in USER_NAMESPACE_CHOICES:
        candidate = Bwrap(found, user_namespace)
        problem = _try(candidate, timeout_seconds)
        if not problem:
            log.info("local sandbox confinement: %s %s", found, " ".join(user_namespace))
            return BwrapProbe(candidate)
        problems.append(f"{' '.join(user_namespace)}: {problem}")
    return BwrapProbe(None, f"{found} does not work here ({'; '.join(problems)})")


def _try(bwrap: Bwrap, timeout_seconds: float) -> str:
    """Run a trivial program confined as a phase would be; '' when it worked, else what went wrong."""
    with tempfile.TemporaryDirectory(prefix="autogolf-bwrap-probe-") as tmp:
        root = Path(tmp)
        (root / "program").mkdir()
        (root / "program" / "probe.py").write_text("import os\nprint(os.getpid())\n")
        (root / "tokenizer.model").write_bytes(b"")
        (root / "out" / "artifact").mkdir(parents=True)
        (root / "scratch").mkdir()
        inv = PhaseInvocation(
            phase=Phase.TRAIN,
            program_dir=root / "program",
            entry="probe.py",
            data_files=(),
            tokenizer_path=root / "tokenizer.model",
            artifact_dir=root / "out" / "artifact",
            out_dir=root / "out",
            log_path=root / "log.txt",
            knob_env={},
            limits=Limits(),
            wall_timeout_seconds=timeout_seconds,
        )
        status_path = root / "bwrap-status.json"
        with status_path.open("w") as status:
            argv = bwrap_argv(
                bwrap,
                inv,
                Scratch.create(root / "scratch"),
                marker=("AUTOGOLF_PROBE", "1"),
                status_fd=status.fileno(),
            )
            try:
                done = subprocess.run(
                    [*argv, sys.executable, "-I", "-S", "/golf/program/probe.py"],
                    capture_output=True,
                    timeout=timeout_seconds,
                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                    pass_fds=(status.fileno(),),
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return str(exc)
        output = (done.stdout + done.stderr).decode(errors="replace").strip()
        # Pid 2: bwrap's own init is pid 1 of the new namespace, the program its first child.
        if done.returncode != 0 or done.stdout.strip() != b"2":
            return f"exit {done.returncode}: {output[-300:] or 'no output'}"
        if "exit-code" not in read_bwrap_status(status_path):
            return "no exit status on --json-status-fd"
    return ""
