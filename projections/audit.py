"""Auditors' reads: the history view filtered and paged, a trunk at a past point, and the
difference between two points. Past states come from replaying the trunk's own events."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.application import TrunkplaneApp
from domain.catalog import TenantCatalog
from domain.errors import NotFoundError, ValidationError
from domain.model import Configured, class_event_name
from domain.operations import ACTIONS
from domain.trunk import Trunk
from projections.history import FieldChange, diff, flatten
from projections.state import KINDS
from projections.views import ViewStore

MAX_PAGE = 1000
DEFAULT_PAGE = 100


@dataclass(frozen=True)
class ChangeQuery:
    tenant: str = ""
    subject_id: str = ""
    subject_ids: tuple[str, ...] = ()  # any of them (every subject that had a name)
    actor: str = ""
    event_type: str = ""
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class ChangeRow:
    position: int
    tenant: str
    subject_kind: str
    subject_id: str
    subject_name: str
    version: int
    time: datetime
    actor: str
    reason: str
    request_id: str
    event_type: str
    changes: list[FieldChange]


class HistoryReader:
    def __init__(self, store: ViewStore) -> None:
        self.store = store

    def page(self, query: ChangeQuery, page_size: int,
             after: int) -> tuple[list[ChangeRow], int | None]:
        if page_size < 0 or page_size > MAX_PAGE:
            raise ValidationError.single("page_size", f"must be 1 to {MAX_PAGE} "
                                                      f"(0 = {DEFAULT_PAGE})")
        size = page_size or DEFAULT_PAGE
        rows = self._select(query, after, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        return rows, (rows[-1].position if more and rows else None)

    def all(self, query: ChangeQuery, chunk: int = 1000) -> Iterator[ChangeRow]:
        after = 0
        while True:
            rows = self._select(query, after, chunk)
            yield from rows
            if len(rows) < chunk:
                return
            after = rows[-1].position

    def subjects_named(self, tenant: str, name: str) -> list[str]:
        """Every trunk or route that ever had the name (ignoring case), deleted ones and
        ones renamed since included, oldest first."""
        where: list[str] = ["LOWER(subject_name) = ?"]
        params: list[object] = [name.casefold()]
        if tenant:
            where.append("tenant = ?")
            params.append(tenant)
        return [str(r[0]) for r in self._query(
            f"SELECT subject_id, MIN(position) AS first FROM {{table}} "
            f"WHERE {' AND '.join(where)} GROUP BY subject_id ORDER BY first", params)]

    def subject_at(self, position: int, subject_id: str) -> tuple[str, str, str] | None:
        """(tenant, kind, name) of the subject as the history shows it at the position,
        else as it shows it last."""
        rows = self._query("SELECT tenant, subject_kind, subject_name FROM {table} "
                           "WHERE position = ? AND subject_id = ?", [position, subject_id])
        rows = rows or self._query(
            "SELECT tenant, subject_kind, subject_name FROM {table} WHERE subject_id = ? "
            "ORDER BY position DESC LIMIT 1", [subject_id])
        return (str(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None

    def actors_like(self, text: str, limit: int = 10) -> list[str]:
        """Recorded actors that contain the text (ignoring case): the hint for a filter
        on an actor nobody is."""
        pattern = "%" + text.casefold().replace("%", "").replace("_", "") + "%"
        return [str(r[0]) for r in self._query(
            "SELECT DISTINCT actor FROM {table} WHERE LOWER(actor) LIKE ? ORDER BY actor "
            f"LIMIT {int(limit)}", [pattern])]

    def tenants(self) -> list[str]:
        return [str(r[0]) for r in self._query(
            "SELECT DISTINCT tenant FROM {table} WHERE tenant <> '' ORDER BY tenant", [])]

    def event_types(self) -> list[str]:
        return [str(r[0]) for r in self._query(
            "SELECT DISTINCT event_type FROM {table} ORDER BY event_type", [])]

    def _query(self, sql: str, params: list[object]) -> list[tuple[Any, ...]]:
        table = f"tp_history_g{self.store.live('history')}"
        with self.store.db.transaction() as cur:
            cur.execute(sql.format(table=table), params)
            return [tuple(r) for r in cur.fetchall()]

    def view_position(self) -> int:
        return self.store.position("history", self.store.live("history"))[0]

    def _select(self, query: ChangeQuery, after: int, limit: int) -> list[ChangeRow]:
        table = f"tp_history_g{self.store.live('history')}"
        where: list[str] = ["position > ?"]
        params: list[object] = [after]
        for column, value in (("tenant", query.tenant), ("subject_id", query.subject_id),
                              ("actor", query.actor), ("event_type", query.event_type)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if query.subject_ids:
            where.append(f"subject_id IN ({', '.join('?' * len(query.subject_ids))})")
            params.extend(query.subject_ids)
        if query.start is not None:
            where.append("time >= ?")
            params.append(query.start.isoformat(timespec="microseconds"))
        if query.end is not None:
            where.append("time < ?")
            params.append(query.end.isoformat(timespec="microseconds"))
        sql = (f"SELECT * FROM {table} WHERE {' AND '.join(where)} "
               f"ORDER BY position LIMIT {int(limit)}")
        with self.store.db.transaction() as cur:
            cur.execute(sql, params)
            return [_row(r) for r in cur.fetchall()]


def known_event_types() -> list[str]:
    """Every event type the history can show, recorded yet or not: what a filter on an
    unknown type is compared with."""
    names = {"OutboundRoutesReordered", *ACTIONS.values()}
    for owner in (*KINDS, TenantCatalog):
        for value in vars(owner).values():
            if (isinstance(value, type) and issubclass(value, Aggregate.Event)
                    and value.__name__ != "Event"):
                names.add(class_event_name(value))
    return sorted(names)


def event_type_hint(wanted: str, known: list[str]) -> str:
    """Why a filter on an event type will find nothing, or "" when it is one we know."""
    if wanted in known:
        return ""
    lowered = {k.casefold(): k for k in known}
    close = ([lowered[wanted.casefold()]] if wanted.casefold() in lowered
             else difflib.get_close_matches(wanted, known, n=3, cutoff=0.6))
    hint = f"; did you mean {' or '.join(close)}?" if close else (
        f"; known types: {', '.join(known)}")
    return f"'{wanted}' is not an event type{hint}"


def _row(r: tuple[Any, ...]) -> ChangeRow:
    return ChangeRow(
        position=int(r[0]), tenant=r[1], subject_kind=r[2], subject_id=r[3],
        subject_name=r[4], version=int(r[5]), time=datetime.fromisoformat(r[6]), actor=r[7],
        reason=r[8], request_id=r[9], event_type=r[10],
        changes=[FieldChange(*c) for c in json.loads(r[11])])


def trunk_at(app: TrunkplaneApp, trunk_id: UUID, version: int | None = None,
             moment: datetime | None = None) -> Trunk:
    """The trunk after its events up to a version or a moment."""
    found = configured_at(app, trunk_id, Trunk, "trunk", version, moment)
    assert isinstance(found, Trunk)
    return found


def configured_at(app: TrunkplaneApp, subject_id: UUID, cls: type[Configured], label: str,
                  version: int | None = None, moment: datetime | None = None) -> Configured:
    """A trunk or route after its events up to a version or a moment."""
    if version is not None and version < 1:
        raise ValidationError.single("at.version", f"versions start at 1, got {version}")
    aggregate: Any = None
    event: Any
    for event in app.events.get(subject_id, lte=version):
        if moment is not None and event.timestamp > moment:
            break
        aggregate = event.mutate(aggregate)
    if not isinstance(aggregate, cls):
        point = f"version {version}" if version is not None else f"{moment}"
        raise NotFoundError(f"{label} {subject_id} did not exist at {point}")
    if version is not None and aggregate.version < version:
        raise NotFoundError(f"{label} {subject_id} has no version {version} "
                            f"(latest is {aggregate.version})")
    return aggregate


def trunk_diff(before: Configured, after: Configured) -> list[FieldChange]:
    return diff(flatten(before.settings), flatten(after.settings))
