"""Backup and restore of the history itself: the stored events with their positions, the
proof (leaves, nodes, signed heads) and the keys (sealed for a passphrase), read in one
snapshot transaction while the service keeps writing, into one portable SQLite file. A
restore into an empty store gives back the same log, position for position, so the proof
and every signed head still hold (`audit verify` shows the saved head).

Snapshots are not copied: they are a cache the proof does not cover; the restored service
replays each aggregate from its events instead."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

import psycopg

from infra.ledger.tables import HEADS, LEAVES, NODES

FORMAT = "trunkplane-backup/1"
PAGE = 5000
PORTABLE = [
    "CREATE TABLE events (position INTEGER PRIMARY KEY, originator_id TEXT NOT NULL, "
    "originator_version INTEGER NOT NULL, topic TEXT NOT NULL, state BLOB NOT NULL)",
    f"CREATE TABLE {LEAVES} (idx INTEGER PRIMARY KEY, position INTEGER NOT NULL, "
    "originator_id TEXT NOT NULL, originator_version INTEGER NOT NULL, leaf BLOB NOT NULL, "
    "root BLOB NOT NULL)",
    f"CREATE TABLE {NODES} (level INTEGER, idx INTEGER, hash BLOB, PRIMARY KEY (level, idx))",
    f"CREATE TABLE {HEADS} (size INTEGER, timestamp_ms INTEGER, root BLOB, key_id TEXT, "
    "signature BLOB, PRIMARY KEY (size, timestamp_ms))",
    "CREATE TABLE manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]
COPIED = {
    "events": "position, originator_id, originator_version, topic, state",
    LEAVES: "idx, position, originator_id, originator_version, leaf, root",
    NODES: "level, idx, hash",
    HEADS: "size, timestamp_ms, root, key_id, signature",
}


class Sealer(Protocol):
    def seal(self, secret: str, context: str) -> str: ...
    def open(self, sealed: str, context: str) -> str: ...
    def header(self) -> dict[str, Any]: ...


class RestoreError(ValueError):
    pass


@dataclass(frozen=True)
class Source:
    """Where the events are: a SQLite file or a PostgreSQL URL, and the events table."""

    sqlite_path: Path | None
    database_url: str

    @property
    def events_table(self) -> str:
        return "trunkplane_events" if self.database_url else "stored_events"

    @property
    def position(self) -> str:
        return "notification_id" if self.database_url else "rowid"


@dataclass(frozen=True)
class Keys:
    cipher_ring: str  # `id:key,id:key`
    signing_key: str  # base64 raw Ed25519


@dataclass(frozen=True)
class Summary:
    events: int
    last_position: int
    head_size: int
    head_root: str


def backup(source: Source, target: Path, keys: Keys, sealer: Sealer) -> Summary:
    """Copies the log and the proof as of one moment into `target` (a new file)."""
    if target.exists():
        raise FileExistsError(f"{target} exists; a backup never overwrites")
    partial = target.with_suffix(target.suffix + ".partial")
    out = sqlite3.connect(partial)
    try:
        for statement in PORTABLE:
            out.execute(statement)
        with _snapshot(source) as read:
            for table, columns in COPIED.items():
                _copy(read, source, table, columns, out)
        summary = _summary(out)
        _manifest(out, source, keys, sealer, summary)
        out.commit()
    finally:
        out.close()
    partial.rename(target)
    return summary


def _copy(read: Any, source: Source, table: str, columns: str, out: sqlite3.Connection) -> None:
    name = source.events_table if table == "events" else table
    select = columns.replace("position,", f"{source.position},", 1) if table == "events" \
        else columns
    key = columns.split(",")[0]
    order = f"{source.position}" if table == "events" else key
    if table == NODES:
        order = "level, idx"
    read.execute(f"SELECT {select} FROM {name} ORDER BY {order}")
    marks = ", ".join("?" * len(columns.split(",")))
    while True:
        rows = read.fetchmany(PAGE)
        if not rows:
            return
        out.executemany(f"INSERT INTO {table} VALUES ({marks})",
                        [_portable(table, row) for row in rows])


def _portable(table: str, row: Any) -> tuple[Any, ...]:
    values = list(row.values()) if isinstance(row, dict) else list(row)
    if table == "events":
        values[1] = str(UUID(str(values[1])))
    return tuple(bytes(v) if isinstance(v, memoryview) else v for v in values)


@contextmanager
def _snapshot(source: Source) -> Iterator[Any]:
    """A read-only transaction that sees one committed state of the whole store: WAL
    readers in SQLite, REPEATABLE READ in PostgreSQL (writers commit in position order,
    the library locks the events table for it, so the snapshot holds a prefix of the log
    with its proof)."""
    if source.database_url:
        with psycopg.connect(source.database_url) as connection:
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield connection.cursor()
        return
    assert source.sqlite_path is not None
    reader = sqlite3.connect(f"file:{source.sqlite_path}?mode=ro", uri=True)
    try:
        reader.execute("BEGIN")
        yield reader.cursor()
    finally:
        reader.close()


def _summary(out: sqlite3.Connection) -> Summary:
    count, last = out.execute("SELECT COUNT(*), COALESCE(MAX(position), 0) FROM events").fetchone()
    head = out.execute(f"SELECT size, root FROM {HEADS} ORDER BY size DESC, timestamp_ms DESC "
                       "LIMIT 1").fetchone()
    size, root = (int(head[0]), bytes(head[1]).hex()) if head else (0, "")
    return Summary(int(count), int(last), size, root)


def _manifest(out: sqlite3.Connection, source: Source, keys: Keys, sealer: Sealer,
              summary: Summary) -> None:
    values = {
        "format": FORMAT, "created_at": datetime.now(UTC).isoformat(),
        "source": "postgresql" if source.database_url else "sqlite",
        "events": str(summary.events), "last_position": str(summary.last_position),
        "head_size": str(summary.head_size), "head_root": summary.head_root,
        "kdf": json.dumps(sealer.header()),
        "cipher_keys": sealer.seal(keys.cipher_ring, "cipher_keys"),
        "signing_key": sealer.seal(keys.signing_key, "signing_key"),
    }
    out.executemany("INSERT INTO manifest VALUES (?, ?)", list(values.items()))


def read_manifest(path: Path) -> dict[str, str]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT key, value FROM manifest").fetchall()
    except sqlite3.DatabaseError as error:
        raise RestoreError(f"{path} is not a trunkplane backup: {error}") from None
    finally:
        connection.close()
    manifest = {str(k): str(v) for k, v in rows}
    if manifest.get("format") != FORMAT:
        raise RestoreError(f"{path} is not a {FORMAT} file")
    return manifest


def open_keys(manifest: dict[str, str], sealer: Sealer) -> Keys:
    return Keys(sealer.open(manifest["cipher_keys"], "cipher_keys"),
                sealer.open(manifest["signing_key"], "signing_key"))


def restore_rows(path: Path, recorder: Any, postgres: bool) -> int:
    """Writes the backup's events (at their positions) and proof into an empty store
    through the recorder's own connection; returns the number of events."""
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        with recorder.datastore.transaction(commit=True) as cur:
            cur.execute(f"SELECT COUNT(*) AS n FROM {recorder.events_table_name}")
            row = cur.fetchall()[0]
            if (row["n"] if isinstance(row, dict) else row[0]) or _has_proof(cur):
                raise RestoreError("the target store is not empty: restore only into an "
                                   "empty data directory or database")
            count = _restore_events(source, cur, recorder.events_table_name, postgres)
            for table in (LEAVES, NODES, HEADS):
                _restore_table(source, cur, table, postgres)
            if postgres and count:
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{recorder.events_table_name}', "
                            "'notification_id'), (SELECT MAX(notification_id) FROM "
                            f"{recorder.events_table_name}))")
        return count
    finally:
        source.close()


def _has_proof(cur: Any) -> bool:
    cur.execute(f"SELECT COUNT(*) AS n FROM {LEAVES}")
    row = cur.fetchall()[0]
    return bool(row["n"] if isinstance(row, dict) else row[0])


def _restore_events(source: sqlite3.Connection, cur: Any, table: str, postgres: bool) -> int:
    mark = "%s" if postgres else "?"
    position = "notification_id" if postgres else "rowid"
    statement = (f"INSERT INTO {table} ({position}, originator_id, originator_version, "
                 f"topic, state) VALUES ({', '.join([mark] * 5)})")
    count = 0
    rows = source.execute("SELECT position, originator_id, originator_version, topic, state "
                          "FROM events ORDER BY position")
    while batch := rows.fetchmany(PAGE):
        cur.executemany(statement, [
            (p, UUID(o) if postgres else UUID(o).hex, v, t, s) for p, o, v, t, s in batch])
        count += len(batch)
    return count


def _restore_table(source: sqlite3.Connection, cur: Any, table: str, postgres: bool) -> None:
    rows = source.execute(f"SELECT * FROM {table}")
    while batch := rows.fetchmany(PAGE):
        marks = ", ".join(["%s" if postgres else "?"] * len(batch[0]))
        cur.executemany(f"INSERT INTO {table} VALUES ({marks})", batch)


def write_key_files(data_dir: Path, keys: Keys, cipher_file: str, signing_path: Path) -> None:
    """The restored keys, mode 0600: the cipher key ring in the data directory's key file
    format (`id key` per line, oldest first) and the signing key where settings look."""
    lines = [item.replace(":", " ", 1) for item in keys.cipher_ring.split(",") if item]
    files = [(signing_path, keys.signing_key + "\n")]
    if lines:  # none: the ring comes from TRUNKPLANE_CIPHER_KEY
        files.append((data_dir / cipher_file, "\n".join(lines) + "\n"))
    for path, text in files:
        if path.exists():
            raise RestoreError(f"{path} exists: restore only into an empty data directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
