"""The read-side state of one trunk or route, folded from its events. Secrets never enter
it: a password is replaced by a keyed fingerprint, enough to tell that it changed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from domain.alerting import AlertRules, NotificationChannel
from domain.catalog import CommandReceipt, TenantCatalog
from domain.model import Configured, own_fields
from domain.operations import OperatorAction
from domain.pbx import Pbx
from domain.routes import InboundRoute, OutboundRoute
from domain.trunk import Trunk
from domain.trunk_settings import SECRET_FIELDS

Fingerprint = Callable[[str], str]
Doc = dict[str, Any]
KINDS: dict[type[Configured], str] = {
    aggregate: aggregate.SUBJECT for aggregate in (Trunk, OutboundRoute, InboundRoute, Pbx,
                                                   NotificationChannel, AlertRules)}


def kind_of(event: Any) -> str | None:
    """trunk, outbound, inbound, pbx, catalog, operation, or None for events no view
    reads."""
    event_class = type(event)
    if event_class not in _KIND_OF:
        owner = event_class.__qualname__.split(".")[0]
        kinds = {cls.__name__: kind for cls, kind in KINDS.items()}
        kinds[TenantCatalog.__name__] = "catalog"
        kinds[OperatorAction.__name__] = "operation"
        assert owner in kinds or owner == CommandReceipt.__name__, (
            f"unknown event {event_class.__qualname__}")
        _KIND_OF[event_class] = kinds.get(owner)
    return _KIND_OF[event_class]


_KIND_OF: dict[type, str | None] = {}


def fold(doc: Doc | None, event: Any, fingerprint: Fingerprint) -> tuple[Doc, Iterable[str]]:
    """The subject's state after the event (`doc` is None before its first event), and
    the settings the event set."""
    role = _role(type(event))
    if role == "created":
        settings = _masked(dict(event.settings), fingerprint)
        return {"id": str(event.originator_id), "tenant": event.tenant, "settings": settings,
                "version": event.originator_version, "deleted": False,
                "create_time": iso(event.timestamp),
                "update_time": iso(event.timestamp)}, settings.keys()
    assert doc is not None, f"{type(event).__qualname__} before its Created event"
    doc = {**doc, "version": event.originator_version, "update_time": iso(event.timestamp)}
    if role == "settings":  # fields_after, with the secrets masked before they enter
        doc["settings"] = {**doc["settings"], **_masked(event.changed_fields(), fingerprint)}
        return doc, own_fields(type(event))
    if role in ("enabled", "disabled"):
        doc["settings"] = event.fields_after(doc["settings"])
        return doc, ("enabled",)
    doc["deleted"] = True
    return doc, ()


def _role(event_class: type) -> str:
    role = _ROLES.get(event_class)
    if role is None:
        role = next(name for cls, name in (
            (Configured.Created, "created"), (Configured.SettingsChanged, "settings"),
            (Configured.Enabled, "enabled"), (Configured.Disabled, "disabled"),
            (Configured.Deleted, "deleted")) if issubclass(event_class, cls))
        _ROLES[event_class] = role
    return role


_ROLES: dict[type, str] = {}


def iso(moment: datetime) -> str:
    """Times in views: ISO 8601 with microseconds, so that text order is time order.

    The same text as `moment.isoformat(timespec="microseconds")`. For UTC times (every
    event's), the date, hour and minute are formatted once per minute: `isoformat` of an
    aware datetime was an eighth of the history view's rebuild (py-spy)."""
    if moment.tzinfo is not UTC:
        return moment.isoformat(timespec="microseconds")
    minute = (moment.toordinal(), moment.hour, moment.minute)
    last_minute, prefix = _last_minute
    if minute != last_minute:
        prefix = moment.replace(tzinfo=None).isoformat(timespec="minutes")
        _remember(minute, prefix)
    # %-formatting: faster here than an f-string with format specs
    return "%s:%02d.%06d+00:00" % (prefix, moment.second, moment.microsecond)  # noqa: UP031


_last_minute: tuple[tuple[int, int, int], str] = ((0, 0, 0), "")


def _remember(minute: tuple[int, int, int], prefix: str) -> None:
    global _last_minute
    _last_minute = (minute, prefix)  # one assignment: threads see a matching pair


def display_name(doc: Doc) -> str:
    """What a trunk or route is called: its name, or an inbound route's DID pattern; a
    tenant's PBX (one per tenant) is called `pbx`."""
    settings = doc["settings"]
    if "source_cidrs" in settings:
        return "pbx"
    if "rules" in settings:
        return "alert rules"
    return str(settings.get("name") or settings.get("did_pattern") or "")


def doc_of(aggregate: Configured) -> Doc:
    """The same shape as a folded doc, from an aggregate (secrets as they are: callers
    render it, never store it)."""
    return {"id": str(aggregate.id), "tenant": aggregate.tenant,
            "settings": aggregate.settings, "version": aggregate.version,
            "deleted": aggregate.deleted, "create_time": iso(aggregate.created_on),
            "update_time": iso(aggregate.modified_on)}


def _masked(settings: Doc, fingerprint: Fingerprint) -> Doc:
    if SECRET_FIELDS.isdisjoint(settings):  # most events change no secret
        return settings
    for key in SECRET_FIELDS & settings.keys():
        settings[key] = fingerprint(settings[key]) if settings[key] else ""
    return settings
