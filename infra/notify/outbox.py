"""The notifier's tables, in the views' database: how far it has read each source, the
state of every condition it watches, the notifications it decided on, and each delivery to
a channel with every attempt. A decision, the conditions it changed and the source
position that led to it are written in one transaction: after a crash the notifier reads
on from that position and neither loses nor repeats a decision. A delivery is marked done
only after the channel accepted it; a crash in between sends it again under the same
idempotency key, which the receiver drops."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from projections.db import Cursor, Database

POSITIONS = "tp_notify_positions"
CONDITIONS = "tp_notify_conditions"
NOTIFICATIONS = "tp_notifications"
DELIVERIES = "tp_notify_deliveries"
ATTEMPTS = "tp_notify_attempts"
Doc = dict[str, Any]


@dataclass
class Notification:
    tenant: str
    kind: str  # registration_failed, registration_recovered, peer_down, ...
    subject: str  # what it is about: a trunk id, an agent id, a view, the log
    title: str
    doc: Doc  # the document a webhook posts and an email renders
    id: str = field(default_factory=lambda: str(uuid.uuid4()))  # the idempotency key


@dataclass(frozen=True)
class Delivery:
    notification_id: str
    channel_id: str
    attempts: int
    doc: Doc


class Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db
        with db.transaction() as cur:
            for sql in (
                f"CREATE TABLE IF NOT EXISTS {POSITIONS} (source TEXT PRIMARY KEY, "
                "position BIGINT NOT NULL)",
                f"CREATE TABLE IF NOT EXISTS {CONDITIONS} (key TEXT PRIMARY KEY, "
                "doc TEXT NOT NULL)",
                f"CREATE TABLE IF NOT EXISTS {NOTIFICATIONS} (id TEXT PRIMARY KEY, "
                "tenant TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL, "
                "created_at TEXT NOT NULL, doc TEXT NOT NULL)",
                f"CREATE TABLE IF NOT EXISTS {DELIVERIES} (notification_id TEXT NOT NULL, "
                "channel_id TEXT NOT NULL, channel TEXT NOT NULL, state TEXT NOT NULL, "
                "attempts INTEGER NOT NULL, next_at TEXT NOT NULL, updated_at TEXT NOT NULL, "
                "PRIMARY KEY (notification_id, channel_id))",
                f"CREATE TABLE IF NOT EXISTS {ATTEMPTS} (notification_id TEXT NOT NULL, "
                "channel_id TEXT NOT NULL, attempt INTEGER NOT NULL, at TEXT NOT NULL, "
                "outcome TEXT NOT NULL, detail TEXT NOT NULL, "
                "PRIMARY KEY (notification_id, channel_id, attempt))",
            ):
                cur.execute(sql)

    def position(self, source: str) -> int:
        with self.db.transaction() as cur:
            cur.execute(f"SELECT position FROM {POSITIONS} WHERE source = ?", (source,))
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def conditions(self) -> dict[str, Doc]:
        with self.db.transaction() as cur:
            cur.execute(f"SELECT key, doc FROM {CONDITIONS}")
            return {str(k): json.loads(d) for k, d in cur.fetchall()}

    @contextmanager
    def decide(self) -> Iterator[Decision]:
        """One transaction: conditions, notifications with their deliveries, position."""
        decision = Decision()
        yield decision
        if decision.empty():
            return
        with self.db.transaction() as cur:
            decision.write(cur)

    def due(self, now: datetime, limit: int = 50) -> list[Delivery]:
        with self.db.transaction() as cur:
            cur.execute(f"SELECT d.notification_id, d.channel_id, d.attempts, n.doc FROM "
                        f"{DELIVERIES} d JOIN {NOTIFICATIONS} n ON n.id = d.notification_id "
                        "WHERE d.state = 'pending' AND d.next_at <= ? ORDER BY d.next_at "
                        f"LIMIT {int(limit)}", (_iso(now),))
            return [Delivery(str(r[0]), str(r[1]), int(r[2]), json.loads(r[3]))
                    for r in cur.fetchall()]

    def next_due(self) -> datetime | None:
        with self.db.transaction() as cur:
            cur.execute(f"SELECT MIN(next_at) FROM {DELIVERIES} WHERE state = 'pending'")
            row = cur.fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def attempted(self, delivery: Delivery, outcome: str, detail: str, state: str,
                  next_at: datetime) -> None:
        """Records one attempt; state: delivered, pending (retry at next_at) or failed."""
        now = _iso(datetime.now(UTC))
        with self.db.transaction() as cur:
            cur.execute(f"INSERT INTO {ATTEMPTS} VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT "
                        "DO NOTHING", (delivery.notification_id, delivery.channel_id,
                                       delivery.attempts + 1, now, outcome, detail[:500]))
            cur.execute(f"UPDATE {DELIVERIES} SET state = ?, attempts = ?, next_at = ?, "
                        "updated_at = ? WHERE notification_id = ? AND channel_id = ?",
                        (state, delivery.attempts + 1, _iso(next_at), now,
                         delivery.notification_id, delivery.channel_id))

    def listed(self, tenant: str, limit: int = 100) -> list[Doc]:
        """The newest notifications of a tenant, each with its deliveries and attempts."""
        with self.db.transaction() as cur:
            cur.execute(f"SELECT id, doc FROM {NOTIFICATIONS} WHERE tenant = ? "
                        f"ORDER BY created_at DESC LIMIT {int(limit)}", (tenant,))
            found = [(str(r[0]), json.loads(r[1])) for r in cur.fetchall()]
            return [{**doc, "deliveries": _deliveries(cur, nid)} for nid, doc in found]

    def delivery_counts(self) -> dict[tuple[str, str], int]:
        """(channel name, state) -> deliveries, for the metrics."""
        with self.db.transaction() as cur:
            cur.execute(f"SELECT channel, state, COUNT(*) FROM {DELIVERIES} "
                        "GROUP BY channel, state")
            return {(str(c), str(s)): int(n) for c, s, n in cur.fetchall()}


def _deliveries(cur: Cursor, notification_id: str) -> list[Doc]:
    cur.execute(f"SELECT channel_id, channel, state, attempts, updated_at FROM {DELIVERIES} "
                "WHERE notification_id = ? ORDER BY channel", (notification_id,))
    rows = cur.fetchall()
    out = []
    for channel_id, channel, state, attempts, updated in rows:
        cur.execute(f"SELECT attempt, at, outcome, detail FROM {ATTEMPTS} WHERE "
                    "notification_id = ? AND channel_id = ? ORDER BY attempt",
                    (notification_id, channel_id))
        tries = [{"attempt": int(a), "at": str(at), "outcome": str(o), "detail": str(d)}
                 for a, at, o, d in cur.fetchall()]
        out.append({"channel_id": str(channel_id), "channel": str(channel),
                    "state": str(state), "attempts": int(attempts),
                    "updated_at": str(updated), "tries": tries})
    return out


@dataclass
class Decision:
    conditions: dict[str, Doc | None] = field(default_factory=dict)  # None: forget it
    notifications: list[tuple[Notification, list[tuple[str, str]]]] = field(
        default_factory=list)  # with (channel id, channel name) to deliver to
    positions: dict[str, int] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.conditions or self.notifications or self.positions)

    def write(self, cur: Cursor) -> None:
        now = _iso(datetime.now(UTC))
        for key, doc in self.conditions.items():
            cur.execute(f"DELETE FROM {CONDITIONS} WHERE key = ?", (key,))
            if doc is not None:
                cur.execute(f"INSERT INTO {CONDITIONS} VALUES (?, ?)", (key, json.dumps(doc)))
        for note, channels in self.notifications:
            cur.execute(f"INSERT INTO {NOTIFICATIONS} VALUES (?, ?, ?, ?, ?, ?)",
                        (note.id, note.tenant, note.kind, note.subject, now,
                         json.dumps(note.doc)))
            for channel_id, name in channels:
                cur.execute(f"INSERT INTO {DELIVERIES} VALUES (?, ?, ?, 'pending', 0, ?, ?)",
                            (note.id, channel_id, name, now, now))
        for source, position in self.positions.items():
            cur.execute(f"INSERT INTO {POSITIONS} VALUES (?, ?) ON CONFLICT (source) "
                        "DO UPDATE SET position = excluded.position", (source, position))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
