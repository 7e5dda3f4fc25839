"""The ``docker`` sandbox backend: one container per phase, shown only what that phase may read.

Isolation comes from the engine: no network, a read-only root filesystem, every capability dropped,
no-new-privileges, a non-root user, memory and pids limits, and bind mounts of exactly the files the
phase may read (read-only) plus its output folder (the only writable host path). Each data shard is
mounted as a single file because a folder of symlinks does not survive a bind mount.

Timeouts are enforced by this module's own watchdog loop: the SDK's ``wait(timeout=...)`` only stops
waiting, it does not stop the container. Output is read from an attach made before the start and
written to a :class:`CappedLog`; the container is removed once its output has been read. The pure
part (what to mount, which limits, which environment) is ``sandbox.backends.docker_config``. Containers carry
labels naming the controller process, so those left by a crashed controller are found and removed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid
from typing import Any

import docker
import docker.errors
import requests

from sandbox.backends.base import Backend, PhaseInvocation, PhaseOutcome
from sandbox.backends.docker_config import (
    LABEL_CONTROLLER_HOST,
    LABEL_CONTROLLER_PID,
    LABEL_CONTROLLER_START,
    LABEL_RUN,
    DockerSettings,
    container_config,
    container_user,
    controller_alive,
    controller_labels,
    grant_access,
)
from sandbox.backends.images import missing_image_hint, require_image
from sandbox.backends.logcap import CappedLog
from sandbox.backends.view import mount_plan
from sandbox.errors import SandboxUnavailable

log = logging.getLogger(__name__)

_LIVE_STATES = ("created", "running", "restarting", "paused")
# The SDK raises its own errors for API answers and requests' errors for a broken connection.
_ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


class DockerBackend(Backend):
    """Runs each phase in a fresh container of ``image``; see the module docstring for the isolation."""

    name = "docker"

    def __init__(self, image: str, client: Any = None, **settings: Any) -> None:
        self.image = image
        self.settings = DockerSettings(**settings)
        self.client = client if client is not None else connect()
        try:
            require_image(self.client, image)
            if self.settings.remove_orphans:
                self.remove_orphans()
        except _ENGINE_ERRORS as exc:
            raise _engine_failed("while starting the docker backend", exc) from exc
        self._checked_images = {image}

    def remove_orphans(self) -> list[str]:
        """Remove containers of this host whose controller process is gone; return their names."""
        host = socket.gethostname()
        removed = []
        for summary in self.client.api.containers(all=True, filters={"label": LABEL_RUN}):
            labels = summary.get("Labels") or {}
            if labels.get(LABEL_CONTROLLER_HOST) != host:
                continue  # another machine sharing this engine owns it
            try:
                pid = int(labels.get(LABEL_CONTROLLER_PID, ""))
            except ValueError:
                continue
            if controller_alive(pid, labels.get(LABEL_CONTROLLER_START)):
                continue
            name = (summary.get("Names") or [summary["Id"]])[0].lstrip("/")
            try:
                self.client.api.remove_container(summary["Id"], force=True)
            except docker.errors.NotFound:
                continue
            removed.append(name)
        if removed:
            log.warning("removed %d orphaned sandbox container(s): %s", len(removed), ", ".join(removed))
        return removed

    def execute(self, invocation: PhaseInvocation, stop: threading.Event) -> PhaseOutcome:
        try:
            return self._execute(invocation, stop)
        except _ENGINE_ERRORS as exc:
            raise _engine_failed(f"during the {invocation.phase} phase", exc) from exc

    def _execute(self, inv: PhaseInvocation, stop: threading.Event) -> PhaseOutcome:
        image = inv.extra.get("docker_image", self.image)
        if image not in self._checked_images:
            require_image(self.client, image)
            self._checked_images.add(image)
        run_id = uuid.uuid4().hex
        config = container_config(
            inv, image=image, run_id=run_id, settings=self.settings, controller=controller_labels()
        )
        uid, gid = container_user(self.settings)
        grant_access(mount_plan(inv), uid, gid)
        capped = CappedLog(inv.log_path, inv.limits.max_log_bytes)
        container = None
        try:
            container, output, started = self._start(config, inv, image)
            pump = _LogPump(container.name, output, capped)
            pump.start()
            timed_out, stopped = self._watch(container, inv, stop, started)
            # Timed from outside, from just before the start to the exit seen by the watchdog: an upper
            # bound. (The engine's StartedAt is stamped after the program is already running.)
            wall_seconds = time.monotonic() - started
            pump.finish(timeout=10.0)
            state = container.attrs.get("State", {})
        finally:
            capped.close()
            if container is not None:
                _remove(container)
        oom = bool(state.get("OOMKilled"))
        exit_code = state.get("ExitCode")
        notes = [f"log reader failed: {pump.error}"] if pump.error else []
        if state.get("Error"):
            notes.append(f"engine: {state['Error']}")
        if state.get("Status") in _LIVE_STATES:  # removed behind our back: its last state is unknown
            notes.append("the container disappeared while running")
            exit_code = None
        if not (timed_out or stopped or oom) and isinstance(exit_code, int) and 128 < exit_code <= 128 + 64:
            notes.append(f"exit code {exit_code}: killed by signal {exit_code - 128}")
        return PhaseOutcome(
            exit_code=None if (timed_out or stopped or oom) else exit_code,
            wall_seconds=wall_seconds,
            timed_out=timed_out,
            stopped=stopped,
            oom=oom,
            log_truncated=capped.truncated,
            detail="; ".join(notes),
        )

    def _start(self, config: dict[str, Any], inv: PhaseInvocation, image: str) -> tuple[Any, Any, float]:
        """Create, attach to and start the container; return it, its output stream and the start time."""
        container = None
        try:
            container = self.client.containers.create(**config)
            # Attached before the start, so not a byte of output is missed.
            output = container.attach(stdout=True, stderr=True, stream=True, logs=False)
            started = time.monotonic()
            container.start()
        except docker.errors.ImageNotFound as exc:
            raise SandboxUnavailable(
                f"Docker image {image!r} is missing", hint=missing_image_hint(image)
            ) from exc
        except _ENGINE_ERRORS as exc:
            if container is not None:
                _remove(container)
            if not isinstance(exc, docker.errors.APIError):
                raise  # the connection broke: execute() reports the engine as failed
            hint = "check the engine's log"
            if inv.gpus:
                hint = "GPU runs need the NVIDIA Container Toolkit on the host (nvidia-ctk runtime configure)"
            raise SandboxUnavailable(
                f"Docker could not start the {inv.phase} container for {inv.label or inv.program_dir}: "
                f"{exc.explanation or exc}",
                hint=hint,
            ) from exc
        return container, output, started

    def _watch(
        self, container: Any, inv: PhaseInvocation, stop: threading.Event, started: float
    ) -> tuple[bool, bool]:
        """Poll until the container exits, killing it at the deadline or on ``stop``.

        Returns (timed_out, stopped). Polls every 10 ms at first, slowing to ``max_poll_seconds``, so
        a short program is noticed quickly and a long one costs few engine calls.
        """
        deadline = started + inv.wall_timeout_seconds
        interval = 0.01
        while True:
            if not _is_live(container):
                return False, False
            now = time.monotonic()
            if stop.is_set():
                self._kill(container)
                return False, True
            if now >= deadline:
                self._kill(container)
                return True, False
            stop.wait(min(interval, deadline - now))
            interval = min(interval * 1.5, self.settings.max_poll_seconds)

    def _kill(self, container: Any) -> None:
        """SIGTERM (docker-init passes it on), then SIGKILL after the grace period; wait for the exit."""
        for sig, wait_seconds in (("SIGTERM", self.settings.kill_grace_seconds), ("SIGKILL", 30.0)):
            # APIError: it exited between the poll and the kill (409) or is gone (404).
            with contextlib.suppress(docker.errors.APIError):
                container.kill(signal=sig)
            until = time.monotonic() + wait_seconds
            while time.monotonic() < until:
                if not _is_live(container):
                    return
                time.sleep(0.05)
        raise SandboxUnavailable(
            f"container {container.name} did not die after SIGKILL", hint="check the Docker engine's health"
        )


class _LogPump(threading.Thread):
    """Copies the container's merged stdout/stderr into the capped log until the stream ends."""

    def __init__(self, name: str, output: Any, capped: CappedLog) -> None:
        super().__init__(name=f"docker-log-{name}", daemon=True)
        self.output = output
        self.capped = capped
        self.error: str = ""

    def run(self) -> None:
        # A thread boundary: whatever goes wrong is recorded for the outcome, never raised into nothing.
        try:
            for chunk in self.output:
                self.capped.write(chunk)
        except Exception as exc:  # noqa: BLE001
            self.error = f"{type(exc).__name__}: {exc}"

    def finish(self, timeout: float) -> None:
        """Wait for the stream to end; a stream still open ends when the container is removed."""
        self.join(timeout)
        if self.is_alive():
            self.error = self.error or f"output stream still open {timeout:.0f} s after the container exited"


def connect() -> Any:
    """A client for the engine named by the environment (DOCKER_HOST, else the local socket)."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise SandboxUnavailable(
            f"cannot reach the Docker engine: {exc}",
            hint="start it (as root: bash scripts/docker_engine.sh), set DOCKER_HOST, "
            "or add this user to the docker group",
        ) from exc
    return client


def _engine_failed(when: str, exc: Exception) -> SandboxUnavailable:
    return SandboxUnavailable(
        f"the Docker engine failed {when}: {type(exc).__name__}: {exc}",
        hint="check that the engine is running (docker info) and its log",
    )


def _is_live(container: Any) -> bool:
    try:
        container.reload()
    except docker.errors.NotFound:
        return False
    return container.status in _LIVE_STATES


def _remove(container: Any) -> None:
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except _ENGINE_ERRORS as exc:
        # Not raised: this runs in ``finally`` blocks and must not hide the error that got there.
        log.warning("could not remove container %s: %s", container.name, exc)
