"""The first process of a local run: joins the run's cgroups, starts the program, reaps, reports.

Run as a script (``python -I -S init_shim.py [options] -- program args...``) by ``sandbox.backends.local``; it
imports nothing outside the standard library. It is the init of the run's PID namespace where there is
one (PID 1: when it exits the kernel kills everything left in the namespace, detached children
included), and a child subreaper otherwise (orphans are re-parented to it, so it can find and kill them).

It applies the resource limits to the program only, forwards SIGTERM/SIGINT to everything in the run,
and writes how the program ended to ``--status-file`` as JSON: ``{"exit_code": int|null, "signal":
int|null}``. Its own exit code is 125 when it could not start the program at all.

It always runs on the host, outside any confinement: where the local backend confines the program
(``sandbox.backends.confinement``), the shim's child is bwrap, which the program cannot see, so the status file
is out of the program's reach. bwrap then reports the program's death by signal n as exit code 128+n.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
import time

_PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>
_SHIM_FAILED = 125
_RLIMIT_NAMES = {
    "as": resource.RLIMIT_AS,
    "nproc": resource.RLIMIT_NPROC,
    "nofile": resource.RLIMIT_NOFILE,
    "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE,
}


def _fail(message: str) -> None:
    sys.stderr.write(f"autogolf-init: {message}\n")
    sys.stderr.flush()
    os._exit(_SHIM_FAILED)


def _children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (orphans re-parented to this subreaper included)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the command name, which is in parentheses and may itself hold spaces.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != b"Z":
            found.append(int(name))
    return found


def _kill_descendants() -> None:
    """Subreaper mode: SIGKILL every remaining descendant until none is left (at most ~5 s)."""
    me = os.getpid()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        children = _children_of(me)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            if not children:
                return
        if not children:
            return
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(prog="init_shim")
    parser.add_argument("--status-file", required=True)
    parser.add_argument("--cgroup-procs", action="append", default=[])
    parser.add_argument("--rlimit", action="append", default=[], help="name=value, e.g. as=268435456")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        _fail("no program given after --")

    # Writing 0 to cgroup.procs moves the writer; children forked afterwards start inside the group,
    # so nothing the program starts can be outside it.
    for procs_file in args.cgroup_procs:
        try:
            with open(procs_file, "w") as f:
                f.write("0")
        except OSError as exc:
            _fail(f"cannot join cgroup {procs_file}: {exc}")

    rlimits: list[tuple[int, int]] = []
    for item in args.rlimit:
        name, _, value = item.partition("=")
        if name not in _RLIMIT_NAMES or not value.isdigit():
            _fail(f"bad --rlimit {item!r}; expected one of {sorted(_RLIMIT_NAMES)} = integer")
        rlimits.append((_RLIMIT_NAMES[name], int(value)))

    in_pid_namespace = os.getpid() == 1
    if not in_pid_namespace:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            _fail(f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}")

    child = os.fork()
    if child == 0:
        try:
            os.setpgid(0, 0)
            for which, value in rlimits:
                resource.setrlimit(which, (value, value))
            os.execvp(command[0], command)
        except BaseException as exc:  # the child must never return into the shim's code
            sys.stderr.write(f"autogolf-init: cannot start {command[0]!r}: {exc}\n")
            sys.stderr.flush()
        os._exit(127)

    def forward(signum: int, _frame: object) -> None:
        # In a PID namespace kill(-1) reaches every process in it except this init; outside one it
        # would reach the whole machine, so there only the program's process group is signalled.
        target = -1 if in_pid_namespace else -child
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    status = None
    while status is None:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        if pid == child:
            status = wait_status

    report: dict[str, int | None] = {"exit_code": None, "signal": None}
    if status is not None:
        if os.WIFEXITED(status):
            report["exit_code"] = os.WEXITSTATUS(status)
        elif os.WIFSIGNALED(status):
            report["signal"] = os.WTERMSIG(status)
    with open(args.status_file, "w") as f:
        json.dump(report, f)
    if not in_pid_namespace:
        _kill_descendants()
    # As PID 1, exiting makes the kernel kill whatever the program left behind.
    os._exit(0)


if __name__ == "__main__":
    main()
