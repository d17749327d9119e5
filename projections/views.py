"""The stored views and the projections that build them. Each projection writes its rows
and its tracking position in one transaction, so after a crash it resumes exactly where
its last committed batch ended: no event applied twice, none skipped.

A view lives in tables of one generation (`tp_history_g3`); a rebuild fills the next
generation while the live one keeps serving, then swaps it in."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring_ascii as quote
from typing import Any, ClassVar

from domain.catalog import TenantCatalog
from domain.model import Configured, Subject, event_name
from domain.operations import OperatorAction
from domain.operations import event_type as operation_type
from domain.text import fold_name
from domain.trunk_settings import SECRET_FIELDS
from projections.db import Cursor, Database
from projections.history import FieldChange, diff, flatten, render
from projections.state import Doc, Fingerprint, display_name, fold, iso, kind_of

Batch = Sequence[tuple[int, Any, Any]]  # (log position, domain event, event as stored)
SUBJECTS = frozenset(Subject)


class Projection(ABC):
    name: ClassVar[str]
    # Bump when the tables or what is written into them change: a store whose live
    # generation has another schema rebuilds the view on start.
    schema: ClassVar[int]

    def __init__(self, fingerprint: Fingerprint) -> None:
        self.fingerprint = fingerprint

    @abstractmethod
    def tables(self, gen: int) -> list[str]:
        """CREATE statements of this projection's tables for one generation."""

    @abstractmethod
    def table_names(self, gen: int) -> list[str]: ...

    @abstractmethod
    def apply(self, cur: Cursor, gen: int, batch: Batch) -> None: ...

    def _docs(self, cur: Cursor, table: str, ids: set[str]) -> dict[str, Doc]:
        docs: dict[str, Doc] = {}
        for subject_id in ids:
            cur.execute(f"SELECT doc FROM {table} WHERE id = ?", (subject_id,))
            row = cur.fetchone()
            if row is not None:
                docs[subject_id] = json.loads(row[0])
        return docs


class ConfigProjection(Projection):
    """Current settings of every trunk, route and tenant PBX (secrets as fingerprints),
    and the order of each tenant's outbound routes."""

    name = "config"
    schema = 3  # 3: names keyed by NFKC case folding (domain.text.fold_name)

    def table_names(self, gen: int) -> list[str]:
        return [f"tp_config_g{gen}", f"tp_order_g{gen}"]

    def tables(self, gen: int) -> list[str]:
        config, order = self.table_names(gen)
        return [
            f"CREATE TABLE IF NOT EXISTS {config} (id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
            "tenant TEXT NOT NULL, name TEXT NOT NULL, sort_key TEXT NOT NULL, "
            "type TEXT NOT NULL, enabled INTEGER NOT NULL, deleted INTEGER NOT NULL, "
            "version BIGINT NOT NULL, position BIGINT NOT NULL, doc TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {config}_by_name ON {config} "
            "(tenant, kind, sort_key, id)",
            f"CREATE TABLE IF NOT EXISTS {order} (tenant TEXT PRIMARY KEY, "
            "route_ids TEXT NOT NULL)",
        ]

    def apply(self, cur: Cursor, gen: int, batch: Batch) -> None:
        config, order = self.table_names(gen)
        subjects = {str(e.originator_id) for _, e, _ in batch
                    if isinstance(e, Configured.Event) and not isinstance(e, Configured.Created)}
        docs = self._docs(cur, config, subjects)
        touched: dict[str, tuple[str, int]] = {}
        orders: dict[str, list[str]] = {}
        for position, event, _ in batch:
            kind = kind_of(event)
            if kind in SUBJECTS:
                key = str(event.originator_id)
                docs[key] = fold(docs.get(key), event, self.fingerprint)[0]
                touched[key] = (kind, position)
            elif isinstance(event, TenantCatalog.OutboundOrderChanged):
                orders[event.tenant] = list(event.order)
        cur.insert_rows(
            f"INSERT INTO {config}",
            [_config_row(key, kind, position, docs[key])
             for key, (kind, position) in touched.items()],
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, sort_key = excluded.sort_key, "
            "type = excluded.type, enabled = excluded.enabled, deleted = excluded.deleted, "
            "version = excluded.version, position = excluded.position, doc = excluded.doc")
        cur.insert_rows(f"INSERT INTO {order}",
                    [(tenant, json.dumps(ids)) for tenant, ids in orders.items()],
                    "ON CONFLICT (tenant) DO UPDATE SET route_ids = excluded.route_ids")


class HistoryProjection(Projection):
    """One row per event of a trunk or route, per change of the route order or policy, per
    fraud alert and per operator action. The tamper evidence is not a view: the recorder
    writes it with the events (infra.ledger), so no rebuild can re-derive it."""

    name = "history"
    # 4: tenant policy and fraud alert rows; 5: operator actions; 6: no hash chain
    schema = 6

    def table_names(self, gen: int) -> list[str]:
        return [f"tp_history_g{gen}", f"tp_history_state_g{gen}"]

    def tables(self, gen: int) -> list[str]:
        history, state = self.table_names(gen)
        return [
            f"CREATE TABLE IF NOT EXISTS {history} (position BIGINT PRIMARY KEY, "
            "tenant TEXT NOT NULL, subject_kind TEXT NOT NULL, subject_id TEXT NOT NULL, "
            "subject_name TEXT NOT NULL, version BIGINT NOT NULL, time TEXT NOT NULL, "
            "actor TEXT NOT NULL, reason TEXT NOT NULL, request_id TEXT NOT NULL, "
            "event_type TEXT NOT NULL, changes TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {history}_subject ON {history} (subject_id, position)",
            f"CREATE INDEX IF NOT EXISTS {history}_tenant ON {history} (tenant, position)",
            f"CREATE INDEX IF NOT EXISTS {history}_actor ON {history} (actor, position)",
            f"CREATE INDEX IF NOT EXISTS {history}_time ON {history} (time)",
            f"CREATE TABLE IF NOT EXISTS {state} (id TEXT PRIMARY KEY, doc TEXT NOT NULL)",
        ]

    def apply(self, cur: Cursor, gen: int, batch: Batch) -> None:
        history, state = self.table_names(gen)
        # One pass for each event's kind and subject id, and the subjects whose stored
        # state the batch needs (the id's text is made once per subject, not per event).
        keyed: list[tuple[int, Any, str | None, str]] = []
        subjects: set[str] = set()
        ids: dict[int, str] = {}
        for position, event, _ in batch:
            kind = kind_of(event)
            originator = event.originator_id
            key = ids.get(originator.int)
            if key is None:
                key = ids[originator.int] = str(originator)
            keyed.append((position, event, kind, key))
            if kind in SUBJECTS:
                if not isinstance(event, Configured.Created):
                    subjects.add(key)
            elif isinstance(event, TenantCatalog.OutboundOrderChanged):
                subjects.add(f"order:{event.tenant}")
            elif isinstance(event, TenantCatalog.PolicyChanged):
                subjects.add(f"policy:{event.tenant}")
        docs = self._docs(cur, state, subjects)
        rows = []
        for position, event, kind, key in keyed:
            if kind in SUBJECTS:
                before = docs.get(key)
                after, keys = fold(before, event, self.fingerprint)
                docs[key] = after
                changes = _changes(before["settings"] if before else {}, after["settings"], keys)
                rows.append(_row(position, event, after["update_time"], after["tenant"], kind,
                                 key, display_name(after), changes))
            elif isinstance(event, TenantCatalog.OutboundOrderChanged):
                tenant = event.tenant
                key = f"order:{tenant}"
                before_order = docs.get(key, {"order": []})["order"]
                docs[key] = {"order": list(event.order)}
                changes = _triples(diff({"order": before_order}, {"order": list(event.order)}))
                rows.append(_row(position, event, iso(event.timestamp), tenant, "route_order",
                                 tenant, "", changes))
            elif isinstance(event, TenantCatalog.PolicyChanged):
                key = f"policy:{event.tenant}"
                before_policy = docs.get(key, {"policy": {}})["policy"]
                docs[key] = {"policy": dict(event.policy)}
                changes = _triples(diff(before_policy, dict(event.policy)))
                rows.append(_row(position, event, iso(event.timestamp), event.tenant,
                                 "tenant_policy", event.tenant, "", changes))
            elif isinstance(event, TenantCatalog.FraudAlertRaised):
                changes = _triples(diff({}, {
                    "alert": event.kind, "detail": event.detail, "extension": event.extension,
                    "route_id": event.route_id}))
                rows.append(_row(position, event, iso(event.timestamp), event.tenant,
                                 "fraud_alert", event.tenant, "", changes))
            elif isinstance(event, OperatorAction.Recorded):
                rows.append(_row(position, event, iso(event.timestamp), event.tenant,
                                 "operation", key, event.action, _triples(diff({}, event.detail)),
                                 operation_type(event)))
        cur.append_rows(history, rows)
        cur.insert_rows(f"INSERT INTO {state}",
                        [(key, json.dumps(doc)) for key, doc in docs.items()],
                        "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc")


Change = tuple[str, str, str]  # field, old value, new value, as the history shows them


def _changes(before: Doc, after: Doc, keys: Iterable[str]) -> list[Change]:
    """The fields that differ among those the event set (the others kept their values)."""
    plain = [k for k in keys if not isinstance(after[k], dict)]
    if len(plain) == 1 and plain[0] in before and plain[0] not in SECRET_FIELDS:
        key = plain[0]  # the common case, one value replaced: no need to flatten
        if before[key] == after[key]:
            return []
        return [(key, render(before[key]), render(after[key]))]
    return _triples(diff(flatten({k: before[k] for k in keys if k in before}),
                         flatten({k: after[k] for k in keys})))


def _triples(changes: list[FieldChange]) -> list[Change]:
    return [(c.field, c.old_value, c.new_value) for c in changes]


def _config_row(key: str, kind: str, position: int, doc: Doc) -> tuple[Any, ...]:
    name = display_name(doc)
    settings = doc["settings"]
    return (key, kind, doc["tenant"], name, fold_name(name), settings.get("type", ""),
            int(settings["enabled"]), int(doc["deleted"]), doc["version"], position,
            json.dumps(doc))


def _row(position: int, event: Any, time: str, tenant: str, kind: str, subject_id: str,
         name: str, changes: list[Change], event_type: str = "") -> tuple[Any, ...]:
    if not event_type:
        event_type = event_name(event) if kind != "route_order" else "OutboundRoutesReordered"
    return (position, tenant, kind, subject_id, name, event.originator_version, time,
            event.actor, event.reason, event.request_id, event_type, _changes_json(changes))


def _changes_json(changes: list[Change]) -> str:
    """`[[field, old, new], ...]` as JSON. Written by hand because `json.dumps` builds a new
    encoder per call, which costs more than the few strings of a change."""
    return "[" + ",".join(
        f"[{quote(field)},{quote(old)},{quote(new)}]" for field, old, new in changes) + "]"


PROJECTIONS: tuple[type[Projection], ...] = (ConfigProjection, HistoryProjection)


class ViewStore:
    """Which generation of each projection is live, and how far each has read the log."""

    META = "tp_projections"

    def __init__(self, db: Database, projections: Sequence[Projection]) -> None:
        self.db = db
        self.projections = {p.name: p for p in projections}
        with db.transaction() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {self.META} (name TEXT NOT NULL, "
                        "generation INTEGER NOT NULL, position BIGINT NOT NULL, "
                        "event_time TEXT NOT NULL, live INTEGER NOT NULL, "
                        "schema INTEGER NOT NULL, PRIMARY KEY (name, generation))")
        for projection in projections:
            self._ensure_live(projection)

    def _ensure_live(self, projection: Projection) -> None:
        """A live generation of the current schema; an outdated one is replaced by an
        empty generation that the runner fills from the first event."""
        with self.db.transaction() as cur:
            cur.execute(f"SELECT generation, schema FROM {self.META} WHERE name = ? "
                        "AND live = 1", (projection.name,))
            row = cur.fetchone()
        if row is None:
            with self.db.transaction() as cur:
                self._create(cur, projection, 1, live=True)
        elif int(row[1]) != projection.schema:
            self.swap(projection.name, self.begin_rebuild(projection.name))

    def _create(self, cur: Cursor, projection: Projection, gen: int, live: bool) -> None:
        """A generation being rebuilt gets its secondary indexes only when it is swapped in:
        building them once at the end is cheaper than keeping them up row by row."""
        for statement in projection.tables(gen):
            if live or not _is_index(statement):
                cur.execute(statement)
        cur.execute(f"INSERT INTO {self.META} VALUES (?, ?, 0, '', ?, ?)",
                    (projection.name, gen, int(live), projection.schema))

    def live(self, name: str) -> int:
        with self.db.transaction() as cur:
            cur.execute(f"SELECT generation FROM {self.META} WHERE name = ? AND live = 1",
                        (name,))
            row = cur.fetchone()
        assert row is not None, f"no live generation of {name}"
        return int(row[0])

    def position(self, name: str, gen: int) -> tuple[int, str]:
        with self.db.transaction() as cur:
            cur.execute(f"SELECT position, event_time FROM {self.META} WHERE name = ? "
                        "AND generation = ?", (name, gen))
            row = cur.fetchone()
        return (0, "") if row is None else (int(row[0]), str(row[1]))

    def apply(self, name: str, gen: int, batch: Batch) -> None:
        """Writes the batch's effect and the new position together, or neither."""
        projection = self.projections[name]
        last_position, last_event, _ = batch[-1]
        with self.db.transaction() as cur:
            projection.apply(cur, gen, batch)
            cur.execute(f"UPDATE {self.META} SET position = ?, event_time = ? WHERE name = ? "
                        "AND generation = ? AND position < ?",
                        (last_position, iso(last_event.timestamp), name, gen,
                         batch[0][0]))
            if cur.rowcount != 1:
                raise RuntimeError(f"{name} g{gen}: batch from {batch[0][0]} does not follow "
                                   "the stored position (two runners on one view?)")

    def begin_rebuild(self, name: str) -> int:
        projection = self.projections[name]
        with self.db.transaction() as cur:
            cur.execute(f"SELECT MAX(generation) FROM {self.META} WHERE name = ?", (name,))
            row = cur.fetchone()
            gen = int(row[0] if row and row[0] is not None else 0) + 1
            self._create(cur, projection, gen, live=False)
        return gen

    def swap(self, name: str, gen: int) -> None:
        """Makes `gen` live and drops every other generation of the projection."""
        projection = self.projections[name]
        with self.db.transaction() as cur:
            for statement in filter(_is_index, projection.tables(gen)):
                cur.execute(statement)
            cur.execute(f"SELECT generation FROM {self.META} WHERE name = ? AND generation <> ?",
                        (name, gen))
            old = [int(r[0]) for r in cur.fetchall()]
            cur.execute(f"UPDATE {self.META} SET live = CASE WHEN generation = ? THEN 1 "
                        "ELSE 0 END WHERE name = ?", (gen, name))
            for stale in old:
                for table in projection.table_names(stale):
                    cur.execute(f"DROP TABLE IF EXISTS {table}")
                cur.execute(f"DELETE FROM {self.META} WHERE name = ? AND generation = ?",
                            (name, stale))


def _is_index(statement: str) -> bool:
    return statement.startswith("CREATE INDEX")
