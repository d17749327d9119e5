"""One process at a time for work that several control planes sharing PostgreSQL could all
do: a PostgreSQL session advisory lock elects it; the others stand by and take over when
the holder's session ends. With SQLite one process owns the store and always leads."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

log = logging.getLogger(__name__)
RELAY_LOCK = 0x7472_756E_6B70  # "trunkp"
PROJECTIONS_LOCK = 0x7472_756E_6B71
NOTIFIER_LOCK = 0x7472_756E_6B72
STARTUP_LOCK = 0x7472_756E_6B7F  # held while a process makes its tables


class Leader:
    def __init__(self, database_url: str, key: int) -> None:
        self._url = database_url
        self._key = key
        self._connection: Any = None
        self._held = False

    def acquire(self) -> bool:
        if not self._url:
            return True
        import psycopg

        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(self._url, autocommit=True)
            row = self._connection.execute("SELECT pg_try_advisory_lock(%s)",
                                           (self._key,)).fetchone()
            self._held = bool(row and row[0])
        except psycopg.Error as error:
            log.warning("leader election (lock %x): %s", self._key, error)
            self.release()
        return self._held

    @property
    def leading(self) -> bool:
        """As of the last acquire or check (no round trip)."""
        return self._held or not self._url

    def holds(self) -> bool:
        """Still the leader: the session holding the lock is alive."""
        if not self._url:
            return True
        if not self._held or self._connection is None:
            return False
        try:
            self._connection.execute("SELECT 1")
            return True
        except Exception:
            self.release()
            return False

    def __call__(self) -> bool:
        """Leads now: holds the lock, or just took it."""
        return self.holds() or self.acquire()

    def release(self) -> None:
        self._held = False
        if self._connection is not None:
            with suppress(Exception):
                self._connection.close()
        self._connection = None



@contextmanager
def startup_lock(database_url: str) -> Iterator[None]:
    """Processes sharing a PostgreSQL database make their tables one at a time: two
    control planes started together on an empty database raced on CREATE TABLE (one
    died with a duplicate key in pg_type). Nothing to do for SQLite."""
    if not database_url:
        yield
        return
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (STARTUP_LOCK,))
        try:
            yield
        finally:
            with suppress(Exception):
                connection.execute("SELECT pg_advisory_unlock(%s)", (STARTUP_LOCK,))
