"""The backend registry: a name from ``RunSpec.backend`` to a :class:`sandbox.backends.base.Backend`.

Implementations are imported lazily so that, e.g., the Docker SDK is loaded only when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from sandbox.backends.base import Backend
from sandbox.errors import SandboxUnavailable

_BACKENDS: dict[str, str] = {
    "local": "sandbox.backends.local:LocalBackend",
    "docker": "sandbox.backends.docker:DockerBackend",
}


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str, **settings: Any) -> Backend:
    """A new backend instance. ``settings`` go to its constructor (``docker`` takes ``image=``).

    Raises ``ValueError`` for an unknown name and :class:`SandboxUnavailable` when the backend's
    module cannot be loaded.
    """
    if name not in _BACKENDS:
        raise ValueError(f"unknown sandbox backend {name!r}; choose one of {backend_names()}")
    module_name, class_name = _BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SandboxUnavailable(
            f"sandbox backend {name!r} cannot be loaded: {exc}",
            hint="install autogolf with its dependencies (pip install -e .) or pick another backend",
        ) from exc
    backend_class = getattr(module, class_name)
    return backend_class(**settings)
