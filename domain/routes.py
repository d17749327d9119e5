"""Outbound routes (dialled number -> ordered trunks) and inbound routes (DID -> destination)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, ClassVar

from domain.dialplan import DialPattern, check_pattern
from domain.errors import Violations
from domain.guard import default_guard, validate_guard
from domain.model import Configured, Fields, Subject
from domain.values import (
    MAX_ALLOWED_EXTENSIONS,
    MAX_DIAL_PATTERNS,
    MAX_ROUTE_TRUNKS,
    check_count,
    parse_description,
    parse_enum,
    parse_name,
)

MAX_WEIGHT = 1000
DESTINATION = re.compile(
    r"(?:hangup|(?:ext|ivr|queue|ringgroup|voicemail|conference|announcement):[A-Za-z0-9_.+-]{1,64})"
)


class Strategy(StrEnum):
    FAILOVER = "failover"
    SPREAD = "spread"
    WEIGHTED = "weighted"


class OutboundRoute(Configured):
    KIND: ClassVar[str] = "outbound route"
    SUBJECT = Subject.OUTBOUND
    DEFAULTS: ClassVar[Fields] = {"guard": default_guard()}

    class RouteRenamed(Configured.SettingsChanged):
        name: str

    class DialPatternsChanged(Configured.SettingsChanged):
        dial_patterns: list[dict[str, str]]

    class RouteTrunksChanged(Configured.SettingsChanged):
        trunks: list[dict[str, Any]]
        strategy: str

    class AllowedExtensionsChanged(Configured.SettingsChanged):
        allowed_extensions: list[str]

    class DescriptionChanged(Configured.SettingsChanged):
        description: str

    class GuardChanged(Configured.SettingsChanged):
        guard: dict[str, Any]

    @property
    def trunk_ids(self) -> list[str]:
        return [t["trunk_id"] for t in self.settings["trunks"]]


OutboundRoute.EVENT_FOR_FIELD = {
    "name": OutboundRoute.RouteRenamed,
    "dial_patterns": OutboundRoute.DialPatternsChanged,
    "trunks": OutboundRoute.RouteTrunksChanged,
    "strategy": OutboundRoute.RouteTrunksChanged,
    "allowed_extensions": OutboundRoute.AllowedExtensionsChanged,
    "description": OutboundRoute.DescriptionChanged,
    "guard": OutboundRoute.GuardChanged,
}


class InboundRoute(Configured):
    KIND: ClassVar[str] = "inbound route"
    SUBJECT = Subject.INBOUND

    class MatchChanged(Configured.SettingsChanged):
        did_pattern: str
        caller_id_pattern: str
        trunk_id: str

    class DestinationChanged(Configured.SettingsChanged):
        destination: str

    class DescriptionChanged(Configured.SettingsChanged):
        description: str


InboundRoute.EVENT_FOR_FIELD = {
    "did_pattern": InboundRoute.MatchChanged,
    "caller_id_pattern": InboundRoute.MatchChanged,
    "trunk_id": InboundRoute.MatchChanged,
    "destination": InboundRoute.DestinationChanged,
    "description": InboundRoute.DescriptionChanged,
}


def _guard(errors: Violations, field: str, parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except (ValueError, TypeError) as error:
        errors.add(field, str(error))
        return None


def validate_outbound(raw: Fields) -> Fields:
    errors = Violations()
    out: Fields = {
        "name": _guard(errors, "name", parse_name, str(raw.get("name") or "")),
        "strategy": _guard(
            errors, "strategy", lambda v: parse_enum(Strategy, v or Strategy.FAILOVER).value,
            str(raw.get("strategy") or ""),
        ),
        "enabled": bool(raw.get("enabled", True)),
        "description": _guard(errors, "description", parse_description,
                              str(raw.get("description") or "")),
    }
    patterns: list[DialPattern] = []
    for field, limit in (("dial_patterns", MAX_DIAL_PATTERNS), ("trunks", MAX_ROUTE_TRUNKS),
                         ("allowed_extensions", MAX_ALLOWED_EXTENSIONS)):
        items = _items(raw, field)
        try:
            check_count(items, limit)
        except ValueError as error:
            errors.add(field, str(error))
            raw = {**raw, field: items[:limit]}  # the rest is not even looked at
    for i, item in enumerate(raw.get("dial_patterns") or []):
        if not isinstance(item, dict | DialPattern):
            errors.add(f"dial_patterns[{i}]", "must be an object with match, prefix, prepend")
            continue
        pattern = item if isinstance(item, DialPattern) else DialPattern(
            match=str(item.get("match", "")), prefix=str(item.get("prefix", "")),
            prepend=str(item.get("prepend", "")))
        checked = _guard(errors, f"dial_patterns[{i}]", lambda p: p.validated(), pattern)
        if checked is not None:
            if str(checked) in [str(p) for p in patterns]:
                errors.add(f"dial_patterns[{i}]", f"'{checked}' is listed twice")
            patterns.append(checked)
    if not raw.get("dial_patterns"):
        errors.add("dial_patterns", "a route needs at least one dial pattern (e.g. NXXNXXXXXX)")
    out["dial_patterns"] = [
        {"match": p.match, "prefix": p.prefix, "prepend": p.prepend} for p in patterns
    ]
    out["trunks"] = _validate_route_trunks(raw.get("trunks") or [], out["strategy"], errors)
    out["allowed_extensions"] = [
        _guard(errors, f"allowed_extensions[{i}]", check_pattern, str(p))
        for i, p in enumerate(raw.get("allowed_extensions") or [])
    ]
    out["guard"] = validate_guard(raw.get("guard"), errors)
    errors.raise_if_any()
    return out


def _items(raw: Fields, field: str) -> list[Any]:
    value = raw.get(field) or []
    return list(value) if isinstance(value, list | tuple) else [value]


def _validate_route_trunks(items: list[Any], strategy: str, errors: Violations) -> list[Any]:
    if not items:
        errors.add("trunks", "a route needs at least one trunk")
    trunks: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors.add(f"trunks[{i}]", "must be an object with trunk_id and weight")
            continue
        trunk_id = str(item.get("trunk_id", "")).strip()
        weight = item.get("weight") or 1
        if not trunk_id:
            errors.add(f"trunks[{i}].trunk_id", "must name a trunk (id or name)")
        elif trunk_id in [t["trunk_id"] for t in trunks]:
            errors.add(f"trunks[{i}].trunk_id", f"trunk '{trunk_id}' is listed twice")
        if not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
            errors.add(f"trunks[{i}].weight", f"must be 1 to {MAX_WEIGHT}, got {weight!r}")
        elif weight != 1 and strategy != Strategy.WEIGHTED:
            errors.add(f"trunks[{i}].weight", "weights apply only to the 'weighted' strategy")
        trunks.append({"trunk_id": trunk_id, "weight": weight})
    return trunks


def validate_inbound(raw: Fields) -> Fields:
    errors = Violations()

    def optional_pattern(value: str) -> str:
        return check_pattern(value.removeprefix("_")) if value.strip() else ""

    def destination(value: str) -> str:
        if not DESTINATION.fullmatch(value.strip()):
            raise ValueError(
                f"'{value}' is not a destination: use kind:target with kind one of ext, ivr, "
                "queue, ringgroup, voicemail, conference, announcement (e.g. ext:1001), or hangup"
            )
        return value.strip()

    out: Fields = {
        "did_pattern": _guard(errors, "did_pattern", optional_pattern,
                              str(raw.get("did_pattern") or "")),
        "caller_id_pattern": _guard(errors, "caller_id_pattern", optional_pattern,
                                    str(raw.get("caller_id_pattern") or "")),
        "trunk_id": str(raw.get("trunk_id") or "").strip(),
        "destination": _guard(errors, "destination", destination,
                              str(raw.get("destination") or "")),
        "enabled": bool(raw.get("enabled", True)),
        "description": _guard(errors, "description", parse_description,
                              str(raw.get("description") or "")),
    }
    errors.raise_if_any()
    return out
