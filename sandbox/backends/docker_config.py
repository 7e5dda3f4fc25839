"""How one phase looks inside its container: mounts, environment, limits and labels (no engine needed).

:func:`container_config` turns a :class:`PhaseInvocation` into the keyword arguments of
``client.containers.create``; ``sandbox.backends.docker`` runs them. Kept apart so that every isolation
setting can be unit-tested without a Docker engine. The /golf layout itself (what is mounted where, and
the contract's environment variables) is shared with the confined local backend: ``sandbox.backends.view``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from docker.types import DeviceRequest, LogConfig, Mount, Ulimit
from pydantic import BaseModel, ConfigDict, Field

from sandbox.backends.base import PhaseInvocation
from sandbox.backends.containment import read_stat_fields
from sandbox.backends.view import (
    HOME_DIR,
    PROGRAM_DIR,
    WORK_DIR,
    Bind,
    ProgramPaths,
    mount_plan,
    program_environment,
)
from sandbox.errors import HarnessError

LABEL_RUN = "autogolf.run"
LABEL_NAME = "autogolf.label"
LABEL_CONTROLLER_PID = "autogolf.controller_pid"
# The controller's start time (clock ticks since boot, /proc/<pid>/stat field 22) tells a live
# controller from an unrelated process that reused its pid.
LABEL_CONTROLLER_START = "autogolf.controller_start"
LABEL_CONTROLLER_HOST = "autogolf.controller_host"

NOBODY = "65534:65534"


class DockerSettings(BaseModel):
    """Knobs of the backend itself (not of the program). Unknown names are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str | None = None  # "uid:gid"; None: the invoking user's, or 65534 (nobody) when that is root
    python: str = "python3"  # the interpreter inside the image
    kill_grace_seconds: float = Field(10.0, ge=0)  # between SIGTERM and SIGKILL
    max_poll_seconds: float = Field(0.25, gt=0)  # the watchdog polls faster at first, then this often
    tmpfs_size: str = "4g"  # each of /tmp, /golf/work, /golf/home (counts against memory_bytes)
    shm_size: str = "2g"  # /dev/shm; NCCL and DataLoader workers need more than Docker's 64 MB
    init: bool = True  # docker-init as PID 1 forwards SIGTERM to the program and reaps zombies
    remove_orphans: bool = True  # on construction


# ------------------------------------------------------------------------------------------- config


def container_user(settings: DockerSettings) -> tuple[int, int]:
    spec = settings.user or (NOBODY if os.geteuid() == 0 else f"{os.geteuid()}:{os.getegid()}")
    try:
        uid, gid = (int(part) for part in spec.split(":"))
    except ValueError:
        raise HarnessError(
            f"docker user {spec!r} is not numeric uid:gid", hint='use e.g. user="1000:1000"'
        ) from None
    return uid, gid


def program_command(inv: PhaseInvocation, settings: DockerSettings) -> list[str]:
    script = str(PROGRAM_DIR / inv.entry)
    if inv.nproc == 1:
        return [settings.python, script]
    # torch.distributed.run is torchrun without relying on a console script being on PATH.
    return [
        settings.python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={inv.nproc}",
        script,
    ]


def contract_env(inv: PhaseInvocation) -> dict[str, str]:
    """The program's environment: its knob values, then the run contract's variables (which win)."""
    fixed = {
        "HOME": str(HOME_DIR),
        # getpass.getuser() (used by Inductor for its cache path) fails for a uid with no passwd entry.
        "USER": "golf",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # the program folder is read-only
    }
    return program_environment(inv, ProgramPaths.in_view(inv), defaults={}, fixed=fixed)


def container_config(
    inv: PhaseInvocation, *, image: str, run_id: str, settings: DockerSettings, controller: dict[str, str]
) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.create`` for one phase; pure, no engine needed."""
    uid, gid = container_user(settings)
    limits = inv.limits
    tmpfs_options = f"rw,exec,nosuid,nodev,size={settings.tmpfs_size},uid={uid},gid={gid},mode=1777"
    config: dict[str, Any] = {
        "image": image,
        "command": program_command(inv, settings),
        "name": f"autogolf-{run_id[:16]}",
        "user": f"{uid}:{gid}",
        "working_dir": str(WORK_DIR),
        "environment": contract_env(inv),
        "mounts": [
            Mount(target=str(target), source=str(source.resolve()), type="bind", read_only=read_only)
            for source, target, read_only in mount_plan(inv)
        ],
        "tmpfs": {
            str(p): tmpfs_options
            for p in ("/tmp", WORK_DIR, HOME_DIR)
            if p != WORK_DIR or inv.workdir is None  # a kept working directory is a bind mount
        },
        "read_only": True,
        "network_mode": "none",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": limits.max_processes if limits.max_processes is not None else -1,
        "ulimits": [
            Ulimit(name="nofile", soft=limits.max_open_files, hard=limits.max_open_files),
            Ulimit(name="fsize", soft=limits.max_file_bytes, hard=limits.max_file_bytes),
            Ulimit(name="core", soft=0, hard=0),
        ],
        "shm_size": settings.shm_size,
        "init": settings.init,
        "labels": {LABEL_RUN: run_id, LABEL_NAME: inv.label, **controller},
        # No log driver: the backend attaches to stdout/stderr before the start and writes the capped
        # log itself. (A json-file log with rotation loses output a following reader has not reached
        # yet, tracebacks included; one without rotation lets a flooding program fill the engine's disk.)
        "log_config": LogConfig(type="none"),
    }
    if limits.memory_bytes is not None:
        # memswap equal to mem: no swap, so running out of memory is an OOM kill, not a crawl.
        config["mem_limit"] = limits.memory_bytes
        config["memswap_limit"] = limits.memory_bytes
    if inv.gpus:
        config["device_requests"] = [
            DeviceRequest(device_ids=[str(i) for i in inv.gpus], capabilities=[["gpu"]])
        ]
    return config


def controller_labels() -> dict[str, str]:
    return {
        LABEL_CONTROLLER_PID: str(os.getpid()),
        LABEL_CONTROLLER_START: _process_start_ticks(os.getpid()) or "",
        LABEL_CONTROLLER_HOST: socket.gethostname(),
    }


def _process_start_ticks(pid: int) -> str | None:
    fields = read_stat_fields(pid)  # fields[0] is field 3 (state), so field 22 is fields[19]
    return fields[19].decode() if fields is not None and len(fields) > 19 else None


def controller_alive(pid: int, start_ticks: str | None) -> bool:
    current = _process_start_ticks(pid)
    if current is None:
        return False
    return not start_ticks or current == start_ticks


# -------------------------------------------------------------------------------------- host paths


def grant_access(plan: list[Bind], uid: int, gid: int) -> None:
    """Make the mounted host paths usable by the container's user (only needed, and only done, as root).

    Writable folders are handed to that user; read-only sources get read (and folder search)
    permission for others where they lack it. Without root the container runs as the invoking user,
    who already owns what the harness created.
    """
    if os.geteuid() != 0:
        return
    for source, _, read_only in plan:
        for path in _walk(source):
            st = path.lstat()
            if st.st_uid == uid or path.is_symlink():
                continue
            if not read_only:
                os.chown(path, uid, gid)
            else:
                wanted = 0o005 if path.is_dir() else 0o004
                if st.st_mode & wanted != wanted:
                    os.chmod(path, st.st_mode | wanted)


def _walk(root: Path) -> list[Path]:
    if not root.is_dir():
        return [root]
    found = [root]
    for folder, dirs, files in os.walk(root):
        found += [Path(folder, name) for name in dirs + files]
    return found
