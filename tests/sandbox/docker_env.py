"""Docker test environment: a running engine and a small Python image, made without any registry.

Fixtures (session scope; import both into a test module to use them):
- ``docker_engine``: a ``docker.DockerClient``. Starts the engine with ``scripts/docker_engine.sh``
  where none answers (root with dockerd installed); skips with the script's reason otherwise.
- ``docker_image``: the tag of the test image, a Debian ``minbase`` root filesystem with python3
  made by debootstrap (the Debian mirror is reachable where no registry is) and ``docker import``-ed.
  The tag carries a hash of the recipe, so a changed recipe makes a new image; the rootfs tarball is
  cached under the autogolf cache folder so that a fresh engine imports it in seconds.

An engine this module started is stopped again at the end of the session, unless another pytest
session is still using it (they share a lock file) or ``AUTOGOLF_KEEP_DOCKERD=1``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from datatools.corpus import cache_root

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = REPO_ROOT / "scripts" / "docker_engine.sh"
ENGINE_PIDFILE = Path(os.environ.get("AUTOGOLF_DOCKERD_PIDFILE", "/tmp/autogolf-dockerd.pid"))
SESSIONS_LOCK = Path("/tmp/autogolf-docker-sessions.lock")
DEBIAN_MIRROR = os.environ.get("AUTOGOLF_DEBIAN_MIRROR", "http://deb.debian.org/debian")

# Everything that decides the image's content; its hash names the image and the cached tarball.
TEST_IMAGE_RECIPE: dict[str, Any] = {
    "version": 1,
    "suite": "bookworm",
    "variant": "minbase",
    "include": ["python3"],
    # Removed after debootstrap: package manager state, docs and Perl are not needed to run Python,
    # and a smaller rootfs makes every container start faster (vfs copies the image per container).
    "remove": [
        "var/cache/apt",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
        "usr/share/zoneinfo",
        "usr/share/perl5",
        "usr/share/lintian",
        "usr/share/bash-completion",
        "usr/share/common-licenses",
        "usr/lib/x86_64-linux-gnu/perl-base",
        "usr/lib/x86_64-linux-gnu/gconv",
        "usr/lib/apt",
        "usr/bin/perl",
        "usr/lib/python3.11/test",
        "usr/lib/python3.11/pydoc_data",
        "usr/lib/python3.11/ensurepip",
        "usr/lib/python3.11/lib2to3",
        "usr/lib/python3.11/idlelib",
        "var/log",
    ],
    "changes": ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8"],
}

# Seconds spent on each step in this session, for reports ("engine_start", "rootfs_build", ...).
timings: dict[str, float] = {}


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(TEST_IMAGE_RECIPE, sort_keys=True).encode()).hexdigest()[:12]


def image_tag() -> str:
    return f"autogolf-test:{recipe_hash()}"


def rootfs_tarball_path() -> Path:
    return cache_root() / "docker" / f"test-rootfs-{recipe_hash()}.tar"


# -------------------------------------------------------------------------------------------- engine


class _EngineSession:
    """The engine for this pytest session: opened once, closed by the config's cleanup."""

    client: Any = None
    skip_reason: str = ""
    lock: Any = None


_session: _EngineSession | None = None


def _open_engine() -> _EngineSession:
    session = _EngineSession()
    try:
        import docker
    except ImportError:
        session.skip_reason = "the docker SDK is not installed (pip install docker)"
        return session
    # A shared lock for as long as this session uses the engine; whoever stops it needs it exclusively.
    session.lock = SESSIONS_LOCK.open("a+")
    fcntl.flock(session.lock, fcntl.LOCK_SH)
    began = time.monotonic()
    try:
        started = subprocess.run(
            ["bash", str(ENGINE_SCRIPT)], capture_output=True, text=True, timeout=90, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        session.skip_reason = f"{ENGINE_SCRIPT.name} failed: {exc}"
        return session
    if started.returncode != 0:
        session.skip_reason = started.stderr.strip() or f"{ENGINE_SCRIPT.name} exited {started.returncode}"
        return session
    timings["engine_start"] = time.monotonic() - began
    try:
        session.client = docker.from_env()
        session.client.ping()
    except docker.errors.DockerException as exc:
        session.client = None
        session.skip_reason = f"the engine started but does not answer: {exc}"
    return session


def _close_engine(session: _EngineSession) -> None:
    if session.client is not None:
        session.client.close()
    if session.lock is None:
        return
    try:
        if os.environ.get("AUTOGOLF_KEEP_DOCKERD") != "1":
            try:
                fcntl.flock(session.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another pytest session still uses the engine; the last one out stops it
            stop_started_engine()
    finally:
        session.lock.close()


def stop_started_engine(timeout_seconds: float = 30.0) -> bool:
    """Stop the dockerd that scripts/docker_engine.sh started (by its recorded pid); True if stopped."""
    try:
        pid = int(ENGINE_PIDFILE.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    if not cmdline.split(b"\0")[0].endswith(b"dockerd"):
        ENGINE_PIDFILE.unlink(missing_ok=True)  # stale: that pid is something else now
        return False
    os.kill(pid, signal.SIGTERM)
    until = time.monotonic() + timeout_seconds
    while time.monotonic() < until and _running(pid):
        time.sleep(0.1)
    ENGINE_PIDFILE.unlink(missing_ok=True)
    return not _running(pid)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def engine_client(request: pytest.FixtureRequest) -> Any:
    """The session's engine client, or skip with the reason there is none."""
    global _session
    if _session is None:
        _session = _open_engine()
        opened = _session
        request.config.add_cleanup(lambda: _close_engine(opened))
    if _session.client is None:
        pytest.skip(f"no Docker engine: {_session.skip_reason}")
    return _session.client


@pytest.fixture(scope="session")
def docker_engine(request: pytest.FixtureRequest) -> Any:
    return engine_client(request)


# --------------------------------------------------------------------------------------------- image


@pytest.fixture(scope="session")
def docker_image(request: pytest.FixtureRequest) -> str:
    return ensure_test_image(engine_client(request))


def ensure_test_image(client: Any) -> str:
    """The test image's tag: already in the engine, imported from the cached tarball, or built."""
    from sandbox.backends.images import image_exists, import_rootfs

    tag = image_tag()
    if image_exists(client, tag):
        return tag
    tarball = rootfs_tarball_path()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time across pytest sessions; the others wait and then find the result.
    with tarball.with_suffix(".lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image_exists(client, tag):
            return tag
        if not tarball.exists():
            began = time.monotonic()
            build_rootfs_tarball(tarball)
            timings["rootfs_build"] = time.monotonic() - began
        began = time.monotonic()
        import_rootfs(client, tarball, tag, changes=TEST_IMAGE_RECIPE["changes"])
        timings["image_import"] = time.monotonic() - began
    return tag


def build_rootfs_tarball(tarball: Path) -> None:
    """debootstrap the recipe into a scratch folder, trim it, and tar it to ``tarball`` atomically."""
    if os.geteuid() != 0:
        pytest.skip("cannot build the Docker test image: debootstrap needs root")
    if shutil.which("debootstrap") is None:
        pytest.skip(
            "cannot build the Docker test image: debootstrap is not installed (apt-get install debootstrap)"
        )
    scratch = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    try:
        rootfs = scratch / "rootfs"
        command = [
            "debootstrap",
            f"--variant={TEST_IMAGE_RECIPE['variant']}",
            f"--include={','.join(TEST_IMAGE_RECIPE['include'])}",
            TEST_IMAGE_RECIPE["suite"],
            str(rootfs),
            DEBIAN_MIRROR,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            pytest.fail(f"building the Docker test image failed: {' '.join(command)}\n{tail}", pytrace=False)
        for relative in TEST_IMAGE_RECIPE["remove"]:
            target = rootfs / relative
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], check=True)
        partial.replace(tarball)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(scratch)
