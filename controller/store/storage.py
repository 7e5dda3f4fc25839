"""The study's database: an Optuna RDB storage, with SQLite set up for a campaign's write pattern.

A trial writes each of its attributes as one transaction (Optuna has no batch write), about a dozen
per trial. SQLite's default rollback journal with ``synchronous=FULL`` syncs the disk several times
per transaction, which made the study the slowest step of a trial (measured in
bench/loop_duty_cycle.py). The write-ahead log with ``synchronous=NORMAL`` syncs once per checkpoint
instead; a committed transaction still survives the process being killed (only a power cut may lose
the last few, never corrupt the file), and readers such as ``autogolf status`` no longer block the
controller's writes. WAL needs the database on a local disk (not NFS); PostgreSQL is the choice for
workers on several machines anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import event

SQLITE_PREFIX = "sqlite:///"


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage; for SQLite, the folder is created, writers wait up to a minute for each other's
    locks, and every connection uses the write-ahead log."""
    if not url.startswith(SQLITE_PREFIX):
        return optuna.storages.RDBStorage(url)
    Path(url.removeprefix(SQLITE_PREFIX)).parent.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    event.listen(storage.engine, "connect", _write_ahead_log)
    storage.engine.dispose()  # the connection Optuna opened to create the schema predates the listener
    return storage


def _write_ahead_log(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")  # kept in the file; a no-op once set
        cursor.execute("PRAGMA synchronous=NORMAL")  # per connection
    finally:
        cursor.close()
