"""A change history built by replaying an aggregate's own events: one entry per event with
who, when, why, and each changed field's value before and after. Secrets show only that
they changed."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.model import Configured, event_name
from domain.trunk_settings import SECRET_FIELDS

CHANGED = "(changed)"
SET = "(set)"
REMOVED = "(removed)"


@dataclass(frozen=True)
class FieldChange:
    field: str
    old_value: str
    new_value: str


@dataclass(frozen=True)
class HistoryEntry:
    version: int
    time: datetime
    actor: str
    reason: str
    request_id: str
    event_type: str
    changes: list[FieldChange] = field(default_factory=list)


def history_of(events: Iterable[Any]) -> list[HistoryEntry]:
    entries: list[HistoryEntry] = []
    aggregate: Configured | None = None
    for event in events:
        before = flatten(aggregate.settings) if aggregate is not None else {}
        aggregate = event.mutate(aggregate)
        assert aggregate is not None
        after = flatten(aggregate.settings)
        entries.append(
            HistoryEntry(
                version=event.originator_version,
                time=event.timestamp,
                actor=getattr(event, "actor", ""),
                reason=getattr(event, "reason", ""),
                request_id=getattr(event, "request_id", ""),
                event_type=event_name(event),
                changes=diff(before, after),
            )
        )
    return entries


def flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
    changes = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old == new or (key not in before and new in ("", None, [], False)):
            continue
        if key in SECRET_FIELDS:
            changes.append(FieldChange(key, SET if old else "", _secret(old, new)))
        else:
            changes.append(FieldChange(key, render(old), render(new)))
    return changes


def _secret(old: Any, new: Any) -> str:
    if not new:
        return REMOVED
    return CHANGED if old else SET


def render(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
