"""The proof tables, written by the event recorder in the transaction that stores the
events: one leaf per event (its hash over the stored bytes, ciphertext included, and the
tree root after it), the inner nodes of the Merkle tree, and the signed heads. Rebuilding
a view never touches them; the database refuses updates and deletes (triggers), so only
someone editing behind the service's back can change them, and signed heads catch that."""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from infra.ledger.merkle import Frontier, frontier_coordinates, leaf_hash

LEAVES = "tp_ledger_leaves"
NODES = "tp_ledger_nodes"
HEADS = "tp_ledger_heads"
TABLES = (LEAVES, NODES, HEADS)
LAYOUT = struct.Struct(">QQI")


class TamperedLogError(RuntimeError):
    """The log and its proof disagree in a way that makes appending unsafe."""


class Cursor(Protocol):
    def execute(self, sql: Any, params: Any = ...) -> Any: ...
    def executemany(self, sql: Any, params: Any) -> Any: ...
    def fetchall(self) -> Any: ...


class Signer(Protocol):
    """Signs a tree head; see infra.ledger.signing."""

    key_id: str

    def sign(self, size: int, root: bytes, timestamp_ms: int) -> bytes: ...


@dataclass(frozen=True)
class Dialect:
    param: str
    blob: str
    postgres: bool

    def sql(self, statement: str) -> str:
        return statement.replace("?", self.param)


SQLITE = Dialect("?", "BLOB", postgres=False)
POSTGRES = Dialect("%s", "BYTEA", postgres=True)


def event_data(position: int, originator_id: Any, version: int, topic: str,
               state: bytes) -> bytes:
    """What a leaf covers: position, aggregate id, version, topic and stored state, the
    last two preceded by their length (big-endian)."""
    raw_topic = topic.encode()
    uuid = originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
    return b"".join((LAYOUT.pack(position, version, len(raw_topic)), uuid.bytes, raw_topic,
                     len(state).to_bytes(4, "big"), bytes(state)))


def create_statements(dialect: Dialect) -> list[str]:
    blob = dialect.blob
    statements = [
        f"CREATE TABLE IF NOT EXISTS {LEAVES} (idx BIGINT PRIMARY KEY, "
        "position BIGINT NOT NULL UNIQUE, originator_id TEXT NOT NULL, "
        f"originator_version BIGINT NOT NULL, leaf {blob} NOT NULL, root {blob} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {NODES} (level INTEGER NOT NULL, idx BIGINT NOT NULL, "
        f"hash {blob} NOT NULL, PRIMARY KEY (level, idx))",
        f"CREATE TABLE IF NOT EXISTS {HEADS} (size BIGINT NOT NULL, "
        f"timestamp_ms BIGINT NOT NULL, root {blob} NOT NULL, key_id TEXT NOT NULL, "
        f"signature {blob} NOT NULL, PRIMARY KEY (size, timestamp_ms))",
    ]
    return statements + [s for table in TABLES for s in _append_only(dialect, table)]


def _append_only(dialect: Dialect, table: str) -> list[str]:
    if not dialect.postgres:
        return [f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON "
                f"{table} BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                for verb in ("UPDATE", "DELETE")]
    return [
        "CREATE OR REPLACE FUNCTION tp_ledger_append_only() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$",
        f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION tp_ledger_append_only()",
    ]


class ProofWriter:
    """Appends the leaves of newly stored events to the tree, inside the caller's
    transaction. The frontier is kept between batches and checked against the stored
    last leaf, so another writer (or a rolled-back batch) makes it reload."""

    def __init__(self, dialect: Dialect, clock: Callable[[], int]) -> None:
        self.dialect = dialect
        self.clock = clock
        self.signer: Signer | None = None
        self._frontier = Frontier()
        self._root = b""
        self._lock = threading.Lock()

    def append(self, cur: Cursor, positions: Sequence[int], events: Sequence[Any]) -> None:
        if not events:
            return
        with self._lock:
            frontier, last_position = self._current(cur)
            if positions[0] <= last_position:
                raise TamperedLogError(
                    f"the proof already holds position {last_position}, but the log gave "
                    f"this write position {positions[0]}: events were removed from the end "
                    "of the log behind the service's back; run `trunkplane audit verify`")
            leaves, nodes = [], []
            for position, event in zip(positions, events, strict=True):
                leaf = leaf_hash(event_data(position, event.originator_id,
                                            event.originator_version, event.topic, event.state))
                nodes += frontier.append(leaf)
                leaves.append((frontier.size - 1, position, str(event.originator_id),
                               event.originator_version, leaf, frontier.root()))
            self._write(cur, leaves, nodes)
            self._frontier, self._root = frontier, leaves[-1][5]
            if self.signer is not None:
                self._sign(cur, frontier.size, self._root)

    def _write(self, cur: Cursor, leaves: list[tuple[Any, ...]],
               nodes: list[tuple[int, int, bytes]]) -> None:
        sql = self.dialect.sql
        cur.executemany(sql(f"INSERT INTO {LEAVES} VALUES (?, ?, ?, ?, ?, ?)"), leaves)
        if nodes:
            cur.executemany(sql(f"INSERT INTO {NODES} VALUES (?, ?, ?)"), nodes)

    def _sign(self, cur: Cursor, size: int, root: bytes) -> None:
        assert self.signer is not None
        now = self.clock()
        cur.execute(self.dialect.sql(f"INSERT INTO {HEADS} VALUES (?, ?, ?, ?, ?)"),
                    (size, now, root, self.signer.key_id, self.signer.sign(size, root, now)))

    def _current(self, cur: Cursor) -> tuple[Frontier, int]:
        """A copy of the frontier (reloaded when the stored tree is not the one we last
        wrote) and the last position the proof holds."""
        cur.execute(f"SELECT idx, root, position FROM {LEAVES} ORDER BY idx DESC LIMIT 1")
        rows = _tuples(cur.fetchall())
        size, root, last = ((int(rows[0][0]) + 1, bytes(rows[0][1]), int(rows[0][2]))
                            if rows else (0, b"", 0))
        if size != self._frontier.size or root != self._root:
            self._frontier, self._root = load_frontier(cur, self.dialect, size), root
        return Frontier(self._frontier.size, self._frontier.roots), last


def load_frontier(cur: Cursor, dialect: Dialect, size: int) -> Frontier:
    roots = []
    for level, index in frontier_coordinates(size):
        if level == 0:
            cur.execute(dialect.sql(f"SELECT leaf FROM {LEAVES} WHERE idx = ?"), (index,))
        else:
            cur.execute(dialect.sql(f"SELECT hash FROM {NODES} WHERE level = ? AND idx = ?"),
                        (level, index))
        rows = _tuples(cur.fetchall())
        if not rows:
            raise LookupError(f"the proof lacks the subtree at level {level}, index {index}")
        roots.append(bytes(rows[0][0]))
    return Frontier(size, roots)


def _tuples(rows: Any) -> list[tuple[Any, ...]]:
    """Rows as tuples: PostgreSQL's recorder cursors return dicts."""
    return [tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in rows]
