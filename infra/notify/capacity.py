"""The capacity report: per trunk and per day (UTC), the peak of simultaneous calls against
the trunk's limit, and the advice the source documentation gives, the peak plus 20%.
Simultaneous calls come from two places: the call records (each held a channel from its
start to its end) and the counts the agents report with each status (which also see
channels leased over gRPC, which leave no call record)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from projections.calls import TABLE as CALLS
from projections.config_view import ConfigView
from projections.db import Database
from projections.status import LOG

HEADROOM = 1.2  # plan capacity at the peak plus 20%


@dataclass(frozen=True)
class CapacityRow:
    trunk_id: str
    trunk_name: str
    day: str
    peak_calls: int
    limit: int  # 0: no limit set
    advice: int


def advice(peak: int) -> int:
    return math.ceil(peak * HEADROOM)


def peaks_from_calls(calls: Iterable[tuple[str, datetime, datetime]]) -> dict[
        tuple[str, str], int]:
    """(trunk id, day) -> most calls held at once, from (trunk, start, end) intervals. A
    call spanning midnight counts on both days."""
    edges: dict[str, list[tuple[datetime, int]]] = {}
    for trunk_id, start, end in calls:
        edges.setdefault(trunk_id, []).extend([(start, 1), (max(start, end), -1)])
    peaks: dict[tuple[str, str], int] = {}
    for trunk_id, points in edges.items():
        held = 0
        for moment, step in sorted(points, key=lambda p: (p[0], p[1])):  # ends first
            if step > 0:
                _raise(peaks, (trunk_id, moment.date().isoformat()), held + 1)
            held += step
            if held > 0 and step < 0:
                _raise(peaks, (trunk_id, moment.date().isoformat()), held)
    return peaks


def _raise(peaks: dict[tuple[str, str], int], key: tuple[str, str], value: int) -> None:
    peaks[key] = max(peaks.get(key, 0), value)


def report(db: Database, config: ConfigView, tenant: str, days: int,
           now: datetime | None = None) -> list[CapacityRow]:
    now = now or datetime.now(UTC)
    first = (now - timedelta(days=max(1, days) - 1)).date().isoformat()
    peaks = peaks_from_calls(_calls(db, tenant, first))
    for key, value in _reported(db, tenant, first).items():
        _raise(peaks, key, value)
    trunks = {doc["id"]: doc for doc in config.trunk_docs(tenant)}
    rows = []
    for (trunk_id, day), peak in sorted(peaks.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        doc = trunks.get(trunk_id)
        if doc is None:
            continue
        limit = (doc["settings"].get("call_limits") or {}).get("max_concurrent_calls") or 0
        rows.append(CapacityRow(trunk_id, doc["settings"]["name"], day, peak, int(limit),
                                advice(peak)))
    return rows


def _calls(db: Database, tenant: str, first: str) -> list[tuple[str, datetime, datetime]]:
    with db.transaction() as cur:
        cur.execute(f"SELECT trunk_id, started_at, ended_at FROM {CALLS} WHERE tenant = ? "
                    "AND ended_at >= ? AND trunk_id <> ''", (tenant, first))
        rows: list[Any] = cur.fetchall()
    return [(str(t), datetime.fromisoformat(s), datetime.fromisoformat(e)) for t, s, e in rows]


def _reported(db: Database, tenant: str, first: str) -> dict[tuple[str, str], int]:
    peaks: dict[tuple[str, str], int] = {}
    with db.transaction() as cur:
        cur.execute(f"SELECT doc FROM {LOG} WHERE tenant = ?", (tenant,))
        for (text,) in cur.fetchall():
            doc = json.loads(text)
            day = doc["observed_at"][:10]
            if day >= first:
                calls = int(doc["active_inbound"]) + int(doc["active_outbound"])
                _raise(peaks, (doc["trunk_id"], day), calls)
    return peaks
