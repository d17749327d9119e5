"""How a change reads in the history: each changed field's value before and after.
Secrets show only that they changed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from domain.trunk_settings import SECRET_FIELDS

CHANGED = "(changed)"
SET = "(set)"
REMOVED = "(removed)"


@dataclass(frozen=True)
class FieldChange:
    field: str
    old_value: str
    new_value: str


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
