"""The trunk status view: the newest observation of each trunk, and a log of every
accepted change with a position, so a watcher can resume exactly where it left off.
Observations are applied idempotently: one that is not newer than the stored one (the
same agent's sequence, or an earlier moment from another agent) changes nothing, so
redelivery is harmless."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from domain.status import AgentHeartbeat, StatusObservation
from projections.db import Database

TABLE = "tp_status"
LOG = "tp_status_log"
AGENTS = "tp_agents"
Doc = dict[str, Any]


class StatusView:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._changed = threading.Condition()
        serial = "BIGSERIAL" if db.dialect == "postgres" else "INTEGER"
        with db.transaction() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (trunk_id TEXT PRIMARY KEY, "
                        "tenant TEXT NOT NULL, agent_id TEXT NOT NULL, sequence BIGINT NOT NULL, "
                        "observed_at TEXT NOT NULL, doc TEXT NOT NULL)")
            cur.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_tenant ON {TABLE} (tenant)")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {LOG} (position {serial} PRIMARY KEY, "
                        "tenant TEXT NOT NULL, trunk_id TEXT NOT NULL, doc TEXT NOT NULL)")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {AGENTS} (agent_id TEXT PRIMARY KEY, "
                        "observed_at TEXT NOT NULL, doc TEXT NOT NULL)")

    def publish(self, observations: Sequence[StatusObservation]) -> None:
        """The in-process StatusSink: apply the observations in one transaction, logging
        each one that changed the view."""
        with self.db.transaction() as cur:
            for o in observations:
                doc = json.dumps(asdict(o), default=_iso)
                cur.execute(
                    f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (trunk_id) "
                    "DO UPDATE SET tenant = excluded.tenant, agent_id = excluded.agent_id, "
                    "sequence = excluded.sequence, observed_at = excluded.observed_at, "
                    f"doc = excluded.doc WHERE (excluded.agent_id = {TABLE}.agent_id AND "
                    f"excluded.sequence > {TABLE}.sequence) OR (excluded.agent_id <> "
                    f"{TABLE}.agent_id AND excluded.observed_at > {TABLE}.observed_at)",
                    (o.trunk_id, o.tenant, o.agent_id, o.sequence, _iso(o.observed_at), doc))
                if cur.rowcount == 1:
                    cur.execute(f"INSERT INTO {LOG} (tenant, trunk_id, doc) VALUES (?, ?, ?)",
                                (o.tenant, o.trunk_id, doc))
        with self._changed:
            self._changed.notify_all()

    def announce(self, heartbeat: AgentHeartbeat) -> None:
        """The agent directory: the newest heartbeat of each agent."""
        doc = json.dumps(asdict(heartbeat), default=_iso)
        stamp = _iso(heartbeat.observed_at)
        with self.db.transaction() as cur:
            cur.execute(
                f"INSERT INTO {AGENTS} VALUES (?, ?, ?) ON CONFLICT (agent_id) DO UPDATE SET "
                f"observed_at = excluded.observed_at, doc = excluded.doc "
                f"WHERE excluded.observed_at > {AGENTS}.observed_at",
                (heartbeat.agent_id, stamp, doc))

    def agents(self) -> list[Doc]:
        with self.db.transaction() as cur:
            cur.execute(f"SELECT doc FROM {AGENTS} ORDER BY agent_id")
            return [json.loads(row[0]) for row in cur.fetchall()]

    def all(self) -> list[Doc]:
        with self.db.transaction() as cur:
            cur.execute(f"SELECT doc FROM {TABLE} ORDER BY tenant, trunk_id")
            return [json.loads(row[0]) for row in cur.fetchall()]

    def count_by_state(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for observed in self.all():
            key = (observed["tenant"], observed["state"])
            counts[key] = counts.get(key, 0) + 1
        return counts

    def of(self, tenant: str, trunk_ids: Sequence[str]) -> dict[str, Doc]:
        if not trunk_ids:
            return {}
        marks = ", ".join("?" for _ in trunk_ids)
        with self.db.transaction() as cur:
            cur.execute(f"SELECT trunk_id, doc FROM {TABLE} WHERE tenant = ? "
                        f"AND trunk_id IN ({marks})", [tenant, *trunk_ids])
            return {row[0]: json.loads(row[1]) for row in cur.fetchall()}

    def head(self) -> int:
        with self.db.transaction() as cur:
            cur.execute(f"SELECT MAX(position) FROM {LOG}")
            row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def changes_after(self, tenant: str, position: int,
                      limit: int = 500) -> list[tuple[int, Doc]]:
        with self.db.transaction() as cur:
            cur.execute(f"SELECT position, doc FROM {LOG} WHERE tenant = ? AND position > ? "
                        f"ORDER BY position LIMIT {int(limit)}", (tenant, position))
            return [(int(row[0]), json.loads(row[1])) for row in cur.fetchall()]

    def wait(self, timeout: float) -> None:
        """Returns when an observation was accepted, or after `timeout` seconds."""
        with self._changed:
            self._changed.wait(timeout)


def _iso(moment: Any) -> str:
    if isinstance(moment, datetime):
        return moment.isoformat(timespec="microseconds")
    raise TypeError(f"cannot store {type(moment).__name__} in a status document")
