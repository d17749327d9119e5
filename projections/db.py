"""A small SQL adapter over sqlite3 and psycopg, so each view is written once: statements
use `?` placeholders and run in explicit transactions."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, Protocol

import psycopg

Row = tuple[Any, ...]
DATABASE_ERRORS = (sqlite3.Error, psycopg.Error)
SQLITE_CHUNK = 250


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def fetchall(self) -> list[Row]: ...
    def fetchone(self) -> Row | None: ...
    @property
    def rowcount(self) -> int: ...
    def insert_rows(self, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
        """`head VALUES (?, ...) tail` for every row, in as few round trips as the
        database allows."""
    def append_rows(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        """New rows for a table, by the fastest path the database has (COPY for
        PostgreSQL)."""


class Database(Protocol):
    dialect: str

    def transaction(self) -> Any: ...
    def close(self) -> None: ...


class _SqliteCursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(sql, rows)

    def fetchall(self) -> list[Row]:
        return self._cursor.fetchall()

    def fetchone(self) -> Row | None:
        row: Row | None = self._cursor.fetchone()
        return row

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def insert_rows(self, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
        # Many rows per statement: SQLite parses once per chunk instead of once per row.
        for start in range(0, len(rows), SQLITE_CHUNK):
            part = rows[start:start + SQLITE_CHUNK]
            self._cursor.execute(f"{head} VALUES {_marks(len(part), len(part[0]))} {tail}",
                                 list(chain.from_iterable(part)))

    def append_rows(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        self.insert_rows(f"INSERT INTO {table}", rows)


@lru_cache(maxsize=64)
def _marks(rows: int, width: int) -> str:
    """`(?, ?), (?, ?)` for `rows` rows of `width` values (made once per shape)."""
    return ", ".join(["(" + ", ".join("?" * width) + ")"] * rows)


class SqliteDatabase:
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(str(path), check_same_thread=False,
                                           isolation_level=None, timeout=30)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """One transaction; a transaction opened inside another joins it."""
        with self._lock:
            cursor = self._connection.cursor()
            outer = self._depth == 0
            if outer:
                cursor.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield _SqliteCursor(cursor)
            except BaseException:
                if outer:
                    cursor.execute("ROLLBACK")
                raise
            finally:
                self._depth -= 1
            if outer:
                cursor.execute("COMMIT")

    def close(self) -> None:
        self._connection.close()


class _PgCursor:
    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql.replace("?", "%s"), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(sql.replace("?", "%s"), rows)

    def fetchall(self) -> list[Row]:
        return self._cursor.fetchall()

    def fetchone(self) -> Row | None:
        return self._cursor.fetchone()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def insert_rows(self, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
        # One parsed statement, pipelined: psycopg's own parsing of a huge multi-row
        # statement costs more than the rows.
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            self.executemany(f"{head} VALUES ({marks}) {tail}", rows)

    def append_rows(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._cursor.copy(f"COPY {table} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


class PostgresDatabase:
    dialect = "postgres"

    def __init__(self, url: str) -> None:
        self._url = url
        self._connection = psycopg.connect(url)
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        with self._lock:
            if self._connection.closed:
                self._connection = psycopg.connect(self._url)
            try:
                with self._connection.transaction(), self._connection.cursor() as cursor:
                    yield _PgCursor(cursor)
            except psycopg.OperationalError:
                self._connection.close()
                raise

    def close(self) -> None:
        self._connection.close()

