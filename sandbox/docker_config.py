"""How one phase looks inside its container: mounts, environment, limits and labels (no engine needed).

:func:`container_config` turns a :class:`PhaseInvocation` into the keyword arguments of
``client.containers.create``; ``sandbox.docker_backend`` runs them. Kept apart so that every isolation
setting can be unit-tested without a Docker engine.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path, PurePosixPath
from typing import Any

from docker.types import DeviceRequest, LogConfig, Mount, Ulimit
from pydantic import BaseModel, ConfigDict, Field

from sandbox.backend import PhaseInvocation
from sandbox.containment import read_stat_fields
from sandbox.errors import HarnessError
from sandbox.spec import Phase

LABEL_RUN = "autogolf.run"
LABEL_NAME = "autogolf.label"
LABEL_CONTROLLER_PID = "autogolf.controller_pid"
# The controller's start time (clock ticks since boot, /proc/<pid>/stat field 22) tells a live
# controller from an unrelated process that reused its pid.
LABEL_CONTROLLER_START = "autogolf.controller_start"
LABEL_CONTROLLER_HOST = "autogolf.controller_host"

GOLF = PurePosixPath("/golf")
PROGRAM_DIR = GOLF / "program"
DATA_DIR = GOLF / "data"
TOKENIZER_DIR = GOLF / "tokenizer"
ARTIFACT_DIR = GOLF / "artifact"
OUT_DIR = GOLF / "out"
WORK_DIR = GOLF / "work"  # tmpfs, the program's working directory
HOME_DIR = GOLF / "home"  # tmpfs, HOME: Triton's and Inductor's compile caches land here
CHECK_POSITIONS = GOLF / "check_positions.i64"
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


def mount_plan(inv: PhaseInvocation) -> list[tuple[Path, PurePosixPath, bool]]:
    """(host path, container path, read_only) for every bind mount of one phase."""
    entry = PurePosixPath(inv.entry)
    if entry.is_absolute() or ".." in entry.parts:
        raise HarnessError(
            f"entry {inv.entry!r} must be a path inside program_dir", hint="use e.g. train_gpt.py"
        )
    artifact_read_only = inv.phase is Phase.EVAL
    plan = [
        (inv.program_dir, PROGRAM_DIR, True),
        (inv.tokenizer_path, TOKENIZER_DIR / inv.tokenizer_path.name, True),
        (inv.artifact_dir, ARTIFACT_DIR, artifact_read_only),
        (inv.out_dir, OUT_DIR, False),
    ]
    seen: dict[str, Path] = {}
    for path in inv.data_files:
        if path.name in seen:
            raise HarnessError(
                f"data files {seen[path.name]} and {path} share the name {path.name!r}",
                hint="give each shard of a phase a distinct file name",
            )
        seen[path.name] = path
        plan.append((path, DATA_DIR / path.name, True))
    if inv.check_positions_path is not None:
        plan.append((inv.check_positions_path, CHECK_POSITIONS, True))
    # Anything that lives inside the writable output folder is mounted a second time over its place
    # there, with its own mode: otherwise an eval phase could rewrite its artifact through /golf/out.
    out = inv.out_dir.resolve()
    for source, _, read_only in list(plan):
        resolved = source.resolve()
        if resolved != out and resolved.is_relative_to(out):
            plan.append((source, OUT_DIR / resolved.relative_to(out).as_posix(), read_only))
    return plan


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
    env = dict(inv.knob_env)
    env.update(
        GOLF_PHASE=inv.phase.value,
        GOLF_OUT=str(OUT_DIR),
        GOLF_ARTIFACT_DIR=str(ARTIFACT_DIR),
        DATA_PATH=str(DATA_DIR),
        TOKENIZER_PATH=str(TOKENIZER_DIR / inv.tokenizer_path.name),
        HOME=str(HOME_DIR),
        # getpass.getuser() (used by Inductor for its cache path) fails for a uid with no passwd entry.
        USER="golf",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",  # the program folder is read-only
    )
    if inv.check_positions_path is not None:
        env["GOLF_CHECK_POSITIONS"] = str(CHECK_POSITIONS)
    else:
        env.pop("GOLF_CHECK_POSITIONS", None)
    return env


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
        "tmpfs": {str(p): tmpfs_options for p in ("/tmp", WORK_DIR, HOME_DIR)},
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


def grant_access(plan: list[tuple[Path, PurePosixPath, bool]], uid: int, gid: int) -> None:
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
