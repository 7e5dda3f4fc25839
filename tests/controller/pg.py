"""A throwaway PostgreSQL server for the many-worker tests and benchmark.

Uses the Debian ``postgresql`` package's binaries (/usr/lib/postgresql/<version>/bin; scripts/test.sh
installs it). The cluster lives in a fresh folder under /tmp with fsync off, listens on a free
127.0.0.1 port and a private unix-socket folder, trusts local connections, and is stopped and deleted
at the end. PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

DATABASE = "golf"
ROLE = "autogolf"


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def unavailable_reason() -> str | None:
    """Why no server can be started here, or None when one can."""
    if postgres_bin() is None:
        return "no PostgreSQL binaries under /usr/lib/postgresql/*/bin (apt-get install -y postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root without runuser to drop to the 'postgres' user"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server, create database ``golf``, yield its SQLAlchemy URL; stop and delete it after."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    bin_dir = postgres_bin()
    assert bin_dir is not None
    root = Path(tempfile.mkdtemp(prefix="autogolf-pg-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        for path in (root, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def run(*args: str) -> None:
        result = subprocess.run(
            [*as_postgres, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}\n{tail}")

    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", ROLE, "--no-sync", "-E", "UTF8")
    options = (
        f"-p {port} -k {sockets} -h 127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200"
    )
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", ROLE, DATABASE)
        yield f"postgresql://{ROLE}@127.0.0.1:{port}/{DATABASE}"
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A live PostgreSQL database for the module's tests (skipped where none can be started)."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with postgres_server() as url:
        yield url
