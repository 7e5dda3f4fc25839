"""The backends that run one phase of one program: ``local`` (a contained subprocess, confined by
bubblewrap where it works) and ``docker`` (one container per phase).

* base.py: the :class:`Backend` interface and what it is given and returns.
* registry.py: a backend name to an instance (implementations load lazily).
* local.py, local_launch.py, containment.py, confinement.py, init_shim.py: the local backend.
* docker.py, docker_config.py, images.py, Dockerfile: the Docker backend.
* view.py (the /golf layout both show a program) and logcap.py (capped logs) are shared.
"""

from sandbox.backends.base import Backend, PhaseInvocation, PhaseOutcome
from sandbox.backends.registry import backend_names, get_backend

__all__ = ["Backend", "PhaseInvocation", "PhaseOutcome", "backend_names", "get_backend"]
