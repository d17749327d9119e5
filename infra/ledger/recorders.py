"""The library's application recorders, extended to write the proof of every event in
the transaction that stores it (eventsourcing's APPLICATION_RECORDER_TOPIC points here).
Both keep the library's own insert path: SQLite's `_insert_events` and PostgreSQL's
pipelined insert, whose notification ids are known before the commit."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL

from infra.ledger.tables import (
    LEAVES,
    POSTGRES,
    SQLITE,
    Dialect,
    ProofWriter,
    create_statements,
)

SQLITE_TOPIC = "infra.ledger.recorders:SqliteProofRecorder"
POSTGRES_TOPIC = "infra.ledger.recorders:PostgresProofRecorder"
# Serialises the creation of the proof tables and trigger function when several control
# planes start at once on one PostgreSQL (CREATE OR REPLACE FUNCTION races otherwise).
CREATE_LOCK = 0x74706C6564676572


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SqliteProofRecorder(SQLiteApplicationRecorder):
    def __init__(self, datastore: SQLiteDatastore,
                 events_table_name: str = "stored_events") -> None:
        self.proof = ProofWriter(SQLITE, _now_ms)
        super().__init__(datastore, events_table_name)

    def construct_create_table_statements(self) -> list[str]:
        return super().construct_create_table_statements() + create_statements(SQLITE)

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        ids = super()._insert_events(c, stored_events, **kwargs)
        assert ids is not None
        self.proof.append(c, ids, stored_events)
        return ids

    @property
    def dialect(self) -> Dialect:
        return SQLITE

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            return [tuple(row) for row in c.fetchall()]


class PostgresProofRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: PostgresDatastore, *,
                 events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.proof = ProofWriter(POSTGRES, _now_ms)
        statements = [f"SELECT pg_advisory_xact_lock({CREATE_LOCK})",
                      *create_statements(POSTGRES)]
        self.sql_create_statements += [SQL(s) for s in statements]  # type: ignore[misc]

    def _fetch_ids_after_insert_events(self, curs: Cursor[DictRow],
                                       stored_events: Sequence[StoredEvent],
                                       **kwargs: Any) -> Sequence[int] | None:
        """Runs inside the insert's transaction, with the events table locked (the library
        serialises writers this way), so the tree is extended by one writer at a time."""
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        assert ids is not None
        self.proof.append(curs, ids, stored_events)
        return ids

    @property
    def dialect(self) -> Dialect:
        return POSTGRES

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(POSTGRES.sql(statement), params)
            return [tuple(row.values()) for row in curs.fetchall()]


ProofRecorder = SqliteProofRecorder | PostgresProofRecorder


def recorder_topic(persistence_module: str) -> str:
    return POSTGRES_TOPIC if persistence_module.endswith("postgres") else SQLITE_TOPIC


def adopt_existing_log(recorder: ProofRecorder, page: int = 1000) -> int:
    """A store written before the proof existed: its events, as they are now, become the
    first leaves (the proof cannot vouch for what happened to them before). Returns how
    many were adopted; 0 when the proof already has leaves or the log is empty."""
    adopted = 0
    while True:
        with recorder.datastore.transaction(commit=True) as cur:
            if recorder.dialect.postgres:
                cur.execute(f"SELECT pg_advisory_xact_lock({CREATE_LOCK})")
            cur.execute(f"SELECT MAX(idx) AS n FROM {LEAVES}")
            row = cur.fetchall()[0]
            value = row["n"] if isinstance(row, dict) else row[0]
            have = 0 if value is None else int(value) + 1
            if have != adopted:  # another process proves the log already
                return adopted
            notes = recorder.select_notifications(adopted and _last(recorder), page,
                                                  inclusive_of_start=False)
            if not notes:
                return adopted
            recorder.proof.append(cur, [n.id for n in notes], notes)
            adopted += len(notes)


def _last(recorder: ProofRecorder) -> int:
    rows = recorder.query(f"SELECT MAX(position) FROM {LEAVES}")
    return int(rows[0][0] or 0)
