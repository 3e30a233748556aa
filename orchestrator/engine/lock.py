"""One engine per SQLite file: a second one would only fight for the write lock."""

from __future__ import annotations

import fcntl
import os


class EngineLockError(RuntimeError):
    pass


class SqliteEngineLock:
    """One engine per SQLite file: a second one would only fight for the write lock."""

    def __init__(self, db_path: str) -> None:
        self.path = os.path.abspath(db_path) + ".engine.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise EngineLockError(
                f"another engine is already running on this SQLite database ({self.path}); "
                "run one engine per SQLite file, or use PostgreSQL for several"
            ) from exc
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
