"""The trunk status view: the newest observation of each trunk, and a log of every
accepted change with a position, so a watcher can resume exactly where it left off.
Observations are applied idempotently: one that is not newer than the stored one (the
same agent's sequence, or an earlier moment from another agent) changes nothing, so
redelivery is harmless.

Also the agent directory. An agent that stops cleanly says so (`left`); one whose
heartbeats stop is `silent` after `silent_after` seconds (domain.status.silent_after,
measured on this process's clock from when its last heartbeat arrived) and dropped from
the directory after `expire_after`. What a silent agent last observed is not shown as the
truth: its trunks read `unknown` (and stale), naming the agent and what it last said,
until a live agent (the new owner, or the same one back) reports them."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from domain.status import SILENT_AFTER, AgentHeartbeat, StatusObservation
from projections.db import Database

TABLE = "tp_status"
LOG = "tp_status_log"
AGENTS = "tp_agents"
Doc = dict[str, Any]


class StatusView:
    def __init__(self, db: Database, silent_after: float = SILENT_AFTER,
                 expire_after: float = 3600.0) -> None:
        self.db = db
        self.silent_after = silent_after
        self.expire_after = expire_after
        self._silent: set[str] = set()  # as of the last sweep
        self._changed = threading.Condition()
        self._version = 0  # accepted batches, so a waiter misses no notification
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
        self.notify()

    def announce(self, heartbeat: AgentHeartbeat,
                 received_at: datetime | None = None) -> None:
        """The agent directory: the newest heartbeat of each agent, with when it arrived
        here (silence is judged on this clock, not the agent's)."""
        doc = {**asdict(heartbeat), "received_at": received_at or datetime.now(UTC)}
        stamp = _iso(heartbeat.observed_at)
        with self.db.transaction() as cur:
            cur.execute(
                f"INSERT INTO {AGENTS} VALUES (?, ?, ?) ON CONFLICT (agent_id) DO UPDATE SET "
                f"observed_at = excluded.observed_at, doc = excluded.doc "
                f"WHERE excluded.observed_at > {AGENTS}.observed_at",
                (heartbeat.agent_id, stamp, json.dumps(doc, default=_iso)))

    def agents(self, now: datetime | None = None) -> list[Doc]:
        """Every agent heard of within `expire_after`, each with its `condition`: alive,
        silent (no heartbeat for `silent_after`) or left (announced a clean stop)."""
        now = now or datetime.now(UTC)
        with self.db.transaction() as cur:
            cur.execute(f"SELECT doc FROM {AGENTS} ORDER BY agent_id")
            docs = [json.loads(row[0]) for row in cur.fetchall()]
        listed = []
        for doc in docs:
            quiet = (now - datetime.fromisoformat(doc.get("received_at")
                                                  or doc["observed_at"])).total_seconds()
            if quiet > self.expire_after:
                continue
            doc["condition"] = ("left" if doc.get("leaving") else
                                "silent" if quiet > self.silent_after else "alive")
            doc["quiet_seconds"] = quiet
            listed.append(doc)
        return listed

    def silent_agents(self, now: datetime | None = None) -> dict[str, Doc]:
        return {a["agent_id"]: a for a in self.agents(now) if a["condition"] == "silent"}

    def _truthful(self, docs: list[Doc], silent: dict[str, Doc]) -> list[Doc]:
        return [_unknown(doc, silent[doc["agent_id"]])
                if doc["agent_id"] in silent and doc["state"] != "disabled" else doc
                for doc in docs]

    def all(self) -> list[Doc]:
        with self.db.transaction() as cur:
            cur.execute(f"SELECT doc FROM {TABLE} ORDER BY tenant, trunk_id")
            docs = [json.loads(row[0]) for row in cur.fetchall()]
        return self._truthful(docs, self.silent_agents())

    def sweep(self, now: datetime | None = None) -> int:
        """Logs, for watchers, the trunks of agents that went silent (as `unknown`) or
        came back (their last observation again) since the last sweep; returns how many
        changes it logged. Run it on one process (the projections' leader)."""
        silent = self.silent_agents(now)
        turned = set(silent) ^ self._silent
        self._silent = set(silent)
        if not turned:
            return 0
        marks = ", ".join("?" for _ in turned)
        with self.db.transaction() as cur:
            cur.execute(f"SELECT doc FROM {TABLE} WHERE agent_id IN ({marks})", sorted(turned))
            docs = self._truthful([json.loads(row[0]) for row in cur.fetchall()], silent)
            for doc in docs:
                cur.execute(f"INSERT INTO {LOG} (tenant, trunk_id, doc) VALUES (?, ?, ?)",
                            (doc["tenant"], doc["trunk_id"], json.dumps(doc)))
        self.notify()
        return len(docs)

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
            docs = [json.loads(row[1]) for row in cur.fetchall()]
        return {doc["trunk_id"]: doc for doc in self._truthful(docs, self.silent_agents())}

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

    def changes_since(self, position: int, limit: int = 1000) -> list[tuple[int, Doc]]:
        """Every tenant's changes after `position`, in order: what one reader hands to all
        the watchers of a process (StatusFeed)."""
        with self.db.transaction() as cur:
            cur.execute(f"SELECT position, doc FROM {LOG} WHERE position > ? "
                        f"ORDER BY position LIMIT {int(limit)}", (position,))
            return [(int(row[0]), json.loads(row[1])) for row in cur.fetchall()]

    @property
    def version(self) -> int:
        return self._version

    def notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def wait(self, timeout: float, seen: int | None = None) -> None:
        """Returns when an observation was accepted (or since `version` was `seen`), or
        after `timeout` seconds."""
        with self._changed:
            if seen is None or seen == self._version:
                self._changed.wait(timeout)


def _unknown(doc: Doc, agent: Doc) -> Doc:
    """A silent agent's last word on a trunk, shown for what it is."""
    said = f"{doc['state']}" + (f" {doc['reason']}" if doc.get("reason") else "")
    return {**doc, "state": "unknown", "sip_code": 0, "registrations_up": 0, "contacts": [],
            "reason": f"agent {agent['agent_id']} silent for {agent['quiet_seconds']:.0f} s "
                      f"(its last report: {said})"}


def _iso(moment: Any) -> str:
    if isinstance(moment, datetime):
        return moment.isoformat(timespec="microseconds")
    raise TypeError(f"cannot store {type(moment).__name__} in a status document")
