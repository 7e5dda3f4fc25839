"""What the local backend starts for one phase: its folders, environment and command line.

The command is always ``[unshare prefix] init_shim [options] -- [bwrap options --] program``: the init
shim (``sandbox/backends/init_shim.py``) stays on the host, where it joins the run's cgroup, applies the rlimits,
reaps and writes the status file; confined, its child is bwrap, which runs the program in the /golf
view (``sandbox.backends.confinement``); unconfined, its child is the program itself, which then sees host paths:
a per-phase data folder of links to its shards, and the output folders where the harness keeps them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from sandbox.backends.base import PhaseInvocation
from sandbox.backends.confinement import Scratch, bwrap_argv, user_site_base
from sandbox.backends.containment import MARKER_VARIABLE, Containment, RunCgroup
from sandbox.backends.view import HOME_DIR, PROGRAM_DIR, ProgramPaths, program_environment
from sandbox.errors import SandboxUnavailable
from sandbox.spec import Limits

INIT_SHIM = Path(__file__).with_name("init_shim.py")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class Launch:
    """How to start one phase. ``pass_fds`` are open in the harness until the process has started."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    status_file: Path  # the init shim's report of how its child ended
    bwrap_status_file: Path | None = None  # bwrap's --json-status-fd output; None when unconfined
    pass_fds: tuple[int, ...] = ()

    def close_fds(self) -> None:
        for fd in self.pass_fds:
            os.close(fd)


def prepare_launch(
    inv: PhaseInvocation,
    run_dir: Path,
    *,
    containment: Containment,
    cgroup: RunCgroup | None,
    marker: str,
    passthrough_env: tuple[str, ...] = (),
) -> Launch:
    """Create the phase's folders under the empty ``run_dir`` and say how to start it.

    Raises :class:`SandboxUnavailable` for a data file that is missing or shares another's name.
    """
    _check_data(inv)
    inv.out_dir.mkdir(parents=True, exist_ok=True)
    # In eval too: an empty artifact folder is a program's problem to report, not a missing mount.
    inv.artifact_dir.mkdir(parents=True, exist_ok=True)
    status_file = run_dir / "status.json"
    outer = [*(containment.unshare_prefix or ()), *shim_command(inv, status_file, cgroup), "--"]
    base = base_environment(inv, passthrough_env, confined=containment.bwrap is not None)
    if containment.bwrap is None:
        for sub in ("work", "tmp", "data"):
            (run_dir / sub).mkdir()
        workdir = inv.workdir if inv.workdir is not None else run_dir / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        paths = ProgramPaths(
            out=inv.out_dir,
            artifact=inv.artifact_dir,
            data=run_dir / "data",
            tokenizer=_stage_data(inv, run_dir / "data"),
            check_positions=inv.check_positions_path,
        )
        fixed = {"HOME": str(run_dir), "TMPDIR": str(run_dir / "tmp"), MARKER_VARIABLE: marker}
        env = program_environment(inv, paths, defaults=base, fixed=fixed)
        program = program_command(inv, (inv.program_dir / inv.entry).resolve())
        return Launch([*outer, *program], env, workdir, status_file)

    scratch = Scratch.create(run_dir)
    fixed = {"HOME": str(HOME_DIR), "TMPDIR": "/tmp"}
    # The marker is not in bwrap's own environment but set by bwrap for the program (see bwrap_argv).
    env = program_environment(inv, ProgramPaths.in_view(inv), defaults=base, fixed=fixed)
    bwrap_status = run_dir / "bwrap-status.json"
    fd = os.open(bwrap_status, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        sandbox = bwrap_argv(containment.bwrap, inv, scratch, marker=(MARKER_VARIABLE, marker), status_fd=fd)
    except BaseException:
        os.close(fd)
        raise
    program = program_command(inv, PROGRAM_DIR / inv.entry)
    return Launch([*outer, *sandbox, *program], env, scratch.work, status_file, bwrap_status, (fd,))


def base_environment(inv: PhaseInvocation, passthrough: tuple[str, ...], *, confined: bool) -> dict[str, str]:
    """A minimal environment, nothing inherited but the ``passthrough`` names (no API keys)."""
    python_bin = str(Path(sys.executable).parent)
    # The host's PATH may name folders a confined program cannot see.
    search = DEFAULT_PATH if confined else os.environ.get("PATH", DEFAULT_PATH)
    env = {
        "PATH": f"{python_bin}:{search}",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in inv.gpus),
    }
    user_base = user_site_base() if confined else None
    if user_base is not None:  # HOME is /golf/home inside, so Python would not find the user site
        env["PYTHONUSERBASE"] = user_base
    env.update({k: os.environ[k] for k in passthrough if k in os.environ})
    return env


def program_command(inv: PhaseInvocation, entry: Path | os.PathLike[str]) -> list[str]:
    if inv.nproc == 1:
        return [sys.executable, str(entry)]
    # torch.distributed.run is torchrun without relying on a console script being on PATH.
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={inv.nproc}",
        str(entry),
    ]


def shim_command(inv: PhaseInvocation, status_file: Path, cgroup: RunCgroup | None) -> list[str]:
    shim = [sys.executable, "-I", "-S", str(INIT_SHIM), "--status-file", str(status_file)]
    for procs in cgroup.procs_files if cgroup is not None else []:
        shim += ["--cgroup-procs", str(procs)]
    shim += [f"--rlimit={name}={value}" for name, value in rlimits(inv.limits, bool(inv.gpus))]
    return shim


def rlimits(limits: Limits, uses_gpus: bool) -> list[tuple[str, int]]:
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


def _check_data(inv: PhaseInvocation) -> None:
    names: set[str] = set()
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


def _stage_data(inv: PhaseInvocation, data_dir: Path) -> Path:
    """Link the phase's shards and the tokenizer into ``data_dir``; returns the tokenizer's new path.

    Unconfined only. A hard link keeps the original's directory out of sight (a symlink's target
    names it), but it is the original file: a program that writes through it changes the data.
    """
    for source in (*inv.data_files, inv.tokenizer_path):
        target = data_dir / source.name
        try:
            os.link(source, target)
        except OSError:  # across filesystems
            target.symlink_to(source.resolve())
    return data_dir / inv.tokenizer_path.name
