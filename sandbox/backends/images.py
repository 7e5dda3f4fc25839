"""The container images the Docker backend runs: the trainer image's build command, presence checks,
and importing a flat root filesystem as an image (how the tests make theirs without a registry).

Imports the Docker SDK lazily so that ``sandbox`` stays importable where it is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sandbox.errors import SandboxUnavailable

TRAINER_IMAGE = "autogolf-trainer:latest"
TRAINER_DOCKERFILE = Path(__file__).with_name("Dockerfile")
# The build context is the repository root so that a later Dockerfile may COPY project files.
BUILD_CONTEXT = TRAINER_DOCKERFILE.parents[2]


WHEELS_DIR = TRAINER_DOCKERFILE.with_name("wheels")  # .whl files baked into the trainer image


def trainer_build_command(
    tag: str = TRAINER_IMAGE, *, pip_extra: tuple[str, ...] = (), system_tools: tuple[str, ...] = ()
) -> list[str]:
    """The ``docker build`` command line for the GPU trainer image (run it from anywhere), with the
    PyPI packages and system tools a record needs (the wheels in :data:`WHEELS_DIR` always go in)."""
    command = ["docker", "build", "-t", tag, "-f", str(TRAINER_DOCKERFILE)]
    if pip_extra:
        command += ["--build-arg", f"PIP_EXTRA={' '.join(pip_extra)}"]
    if system_tools:
        command += ["--build-arg", f"SYSTEM_TOOLS={' '.join(system_tools)}"]
    return [*command, str(BUILD_CONTEXT)]


def missing_image_hint(image: str) -> str:
    if image == TRAINER_IMAGE:
        return f"build it once with: {' '.join(trainer_build_command())}"
    return f"build or load the image {image!r} first (docker build / docker load / docker import)"


def image_exists(client: Any, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def require_image(client: Any, image: str) -> None:
    """Raise :class:`SandboxUnavailable` naming the build command when ``image`` is not present."""
    import docker.errors

    try:
        present = image_exists(client, image)
    except docker.errors.DockerException as exc:
        raise SandboxUnavailable(
            f"cannot look up Docker image {image!r}: {exc}", hint="check that the Docker engine is running"
        ) from exc
    if not present:
        raise SandboxUnavailable(f"Docker image {image!r} is not present", hint=missing_image_hint(image))


def import_rootfs(client: Any, tarball: Path, tag: str, *, changes: list[str] | None = None) -> None:
    """``docker import`` of an uncompressed root filesystem tarball as ``tag`` (one flat layer).

    ``changes`` are Dockerfile instructions applied on import (e.g. ``ENV PATH=...``).
    """
    repository, _, version = tag.rpartition(":")
    if not repository or "/" in version:
        repository, version = tag, "latest"
    # A path (not an open file) makes the SDK post the file with no read timeout, streamed.
    client.api.import_image(src=str(tarball), repository=repository, tag=version, changes=changes or None)
    if not image_exists(client, tag):
        raise SandboxUnavailable(
            f"importing {tarball} did not produce the image {tag!r}", hint="check the engine's log"
        )
