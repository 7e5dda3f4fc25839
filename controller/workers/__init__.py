"""Many ``autogolf worker`` processes on one shared study (PostgreSQL) and one shared git remote.

* worker.py: the command, and opening a worker's controller.
* study.py: :class:`WorkerStudy`, the shared study as one worker sees it.
* remote.py: :class:`SharedRemote`, the bare git repository every worker pushes to.
* peers.py: :class:`WorkerPeers`, the loop's hooks that keep the two in step and recover dead workers.
"""

from controller.workers.peers import WorkerPeers
from controller.workers.remote import SharedRemote, SharedStore
from controller.workers.study import WorkerIdentity, WorkerStudy
from controller.workers.worker import open_worker, register_worker

__all__ = [
    "SharedRemote",
    "SharedStore",
    "WorkerIdentity",
    "WorkerPeers",
    "WorkerStudy",
    "open_worker",
    "register_worker",
]
