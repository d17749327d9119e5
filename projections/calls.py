"""The call records the control plane serves: one row per call, written by the agent's sink
in one process or by the pump from the calls topic, read newest first with filters and
pages. Writing a record twice changes nothing (a redelivered record has the same key)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from domain.calls import CallAttempt, CallRecord
from domain.errors import ValidationError
from domain.model import Direction
from projections.db import Database

TABLE = "tp_calls"
MAX_PAGE = 1000
DEFAULT_PAGE = 100
DIRECTIONS = tuple(Direction)
COLUMNS = ("record_key", "tenant", "direction", "agent_id", "call_id", "trunk_id", "trunks",
           "number_received", "number_sent", "caller_received", "caller_sent",
           "started_at", "answered_at", "ended_at", "final_code", "final_reason", "hangup_by",
           "attempts")


@dataclass(frozen=True)
class CallQuery:
    tenant: str = "default"
    direction: str = ""  # outbound | inbound | "" (both)
    trunk_id: str = ""  # the call tried this trunk (carried or not)
    number: str = ""  # dialled or calling number, as received or as sent
    start_time: datetime | None = None  # started at or after
    end_time: datetime | None = None  # started before
    final_code: int = 0  # 0: any


class CallStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        with db.transaction() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (record_key TEXT PRIMARY KEY, "
                        "tenant TEXT NOT NULL, direction TEXT NOT NULL, agent_id TEXT NOT NULL, "
                        "call_id TEXT NOT NULL, trunk_id TEXT NOT NULL, trunks TEXT NOT NULL, "
                        "number_received TEXT NOT NULL, number_sent TEXT NOT NULL, "
                        "caller_received TEXT NOT NULL, caller_sent TEXT NOT NULL, "
                        "started_at TEXT NOT NULL, answered_at TEXT, ended_at TEXT NOT NULL, "
                        "final_code INTEGER NOT NULL, final_reason TEXT NOT NULL, "
                        "hangup_by TEXT NOT NULL, attempts TEXT NOT NULL)")
            cur.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_recent ON {TABLE} "
                        "(tenant, started_at, record_key)")
            # The hourly retention deletes by start time across tenants.
            cur.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_started ON {TABLE} (started_at)")

    def record(self, records: Sequence[CallRecord]) -> None:
        """Stores the records in one transaction; one already stored is left as it is."""
        if records:
            with self.db.transaction() as cur:
                cur.insert_rows(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)})",
                                [_row(r) for r in records],
                                "ON CONFLICT (record_key) DO NOTHING")

    def page(self, query: CallQuery, page_size: int = 0,
             page_token: str = "") -> tuple[list[CallRecord], str]:
        """Newest first; the token continues after the last record of the page."""
        if not 0 <= page_size <= MAX_PAGE:
            raise ValidationError.single("page_size", f"must be 1 to {MAX_PAGE} "
                                                      f"(0 = {DEFAULT_PAGE})")
        size = page_size or DEFAULT_PAGE
        where, params = _filters(query)
        if page_token:
            started, key = _decode(page_token)
            where.append("(started_at < ? OR (started_at = ? AND record_key < ?))")
            params += [started, started, key]
        # Only constant column conditions are joined in; every value is a parameter.
        sql = (f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE {' AND '.join(where)} "  # noqa: S608
               f"ORDER BY started_at DESC, record_key DESC LIMIT {size + 1}")
        with self.db.transaction() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
        page = rows[:size]
        token = _encode(str(page[-1][11]), str(page[-1][0])) if len(rows) > size else ""
        return [_record(r) for r in page], token


    def prune(self, before: datetime) -> int:
        """Deletes the records of calls started before `before`; returns how many."""
        with self.db.transaction() as cur:
            cur.execute(f"DELETE FROM {TABLE} WHERE started_at < ?", (_iso(before),))  # noqa: S608
            return max(int(cur.rowcount), 0)


def record_key(record: CallRecord) -> str:
    """One call on one agent: its Call-ID and start (a Call-ID alone may come back)."""
    return f"{_iso(record.started_at)}|{record.agent_id}|{record.call_id}"


def _filters(query: CallQuery) -> tuple[list[str], list[Any]]:
    if query.direction and query.direction not in DIRECTIONS:
        raise ValidationError.single("direction", "must be outbound, inbound or empty (both)")
    if not 0 <= query.final_code <= 699:
        raise ValidationError.single("final_code", "must be a SIP code 100-699, or 0 (any)")
    if query.start_time and query.end_time and query.start_time >= query.end_time:
        raise ValidationError.single("end_time", "must be after start_time")
    where: list[str] = ["tenant = ?"]
    params: list[Any] = [query.tenant]
    for column, value in (("direction", query.direction), ("final_code", query.final_code)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if query.trunk_id:
        where.append("trunks LIKE ?")
        params.append(f"%|{query.trunk_id}|%")
    if query.number:
        where.append("? IN (number_received, number_sent, caller_received, caller_sent)")
        params.append(query.number)
    if query.start_time is not None:
        where.append("started_at >= ?")
        params.append(_iso(query.start_time))
    if query.end_time is not None:
        where.append("started_at < ?")
        params.append(_iso(query.end_time))
    return where, params


def _iso(moment: datetime) -> str:
    """UTC with microseconds, so that text order is time order."""
    if moment.tzinfo is None:
        raise ValueError("call record times must carry a time zone")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _row(r: CallRecord) -> tuple[Any, ...]:
    trunks = "|" + "|".join(dict.fromkeys(
        [a.trunk_id for a in r.attempts] + ([r.trunk_id] if r.trunk_id else []))) + "|"
    attempts = json.dumps([[a.trunk_id, a.trunk_name, a.code, a.reason] for a in r.attempts])
    return (record_key(r), r.tenant, r.direction, r.agent_id, r.call_id, r.trunk_id, trunks,
            r.number_received, r.number_sent, r.caller_received, r.caller_sent,
            _iso(r.started_at), _iso(r.answered_at) if r.answered_at else None,
            _iso(r.ended_at), r.final_code, r.final_reason, r.hangup_by, attempts)


def _record(row: tuple[Any, ...]) -> CallRecord:
    values = dict(zip(COLUMNS, row, strict=True))
    answered = values["answered_at"]
    return CallRecord(
        call_id=values["call_id"], tenant=values["tenant"], direction=values["direction"],
        agent_id=values["agent_id"],
        attempts=tuple(CallAttempt(*a) for a in json.loads(values["attempts"])),
        number_received=values["number_received"], number_sent=values["number_sent"],
        caller_received=values["caller_received"], caller_sent=values["caller_sent"],
        trunk_id=values["trunk_id"], started_at=datetime.fromisoformat(values["started_at"]),
        answered_at=datetime.fromisoformat(answered) if answered else None,
        ended_at=datetime.fromisoformat(values["ended_at"]),
        final_code=int(values["final_code"]), final_reason=values["final_reason"],
        hangup_by=values["hangup_by"])


def _encode(started: str, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([started, key]).encode()).decode()


def _decode(token: str) -> tuple[str, str]:
    try:
        started, key = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(started), str(key)
    except (ValueError, TypeError):
        raise ValidationError.single(
            "page_token", "is not a token this service returned") from None
