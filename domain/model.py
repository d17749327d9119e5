"""What every configured aggregate (trunk, outbound route, inbound route) shares: its
settings live in one canonical dict, and each change is a named event that carries
exactly the fields it changes, plus who changed it, why, and under which request."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Self
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.errors import ConflictError, NotFoundError, Violations
from domain.values import parse_reason, parse_request_id

Fields = dict[str, Any]  # an aggregate's field values by name (settings of a trunk or route)
META_FIELDS = ("actor", "reason", "request_id")
BASE_FIELDS = frozenset(
    {"originator_id", "originator_version", "originator_topic", "timestamp", *META_FIELDS}
)


@dataclass(frozen=True)
class CommandMeta:
    """Who asked, why, and under which request id; recorded on every event."""

    actor: str = "anonymous"
    reason: str = ""
    request_id: str = ""
    idempotency_key: str = ""
    fingerprint: str = ""
    # The caller may send a trunk's credentials somewhere new without giving them again
    # (the admin role); see Trunk.check_credentials_stay.
    may_move_credentials: bool = False

    def check(self) -> None:
        """Reason and request id are free text shown in tables and exports: one printable
        line each, of bounded length."""
        errors = Violations()
        for field, parse, value in (("options.reason", parse_reason, self.reason),
                                    ("options.request_id", parse_request_id, self.request_id)):
            try:
                parse(value)
            except ValueError as error:
                errors.add(field, str(error))
        errors.raise_if_any()

    def event_kwargs(self) -> dict[str, str]:
        return {"actor": self.actor, "reason": self.reason, "request_id": self.request_id}


class Subject(StrEnum):
    """What a configuration change is about: the name used in views, history filters, the
    catalog and the agent's tables alike."""

    TRUNK = "trunk"
    OUTBOUND = "outbound"
    INBOUND = "inbound"
    PBX = "pbx"
    CHANNEL = "channel"  # a notification channel (domain.alerting)
    ALERT_RULES = "alert_rules"


class Direction(StrEnum):
    """Which way a call goes through a trunk."""

    OUTBOUND = "outbound"
    INBOUND = "inbound"


class Configured(Aggregate):
    """Base of aggregates whose state is a settings dict changed by field events."""

    KIND: ClassVar[str] = ""  # how people read it: "trunk", "outbound route"...
    SUBJECT: ClassVar[Subject]

    class Event(Aggregate.Event):
        actor: str
        reason: str
        request_id: str

        def changed_fields(self) -> dict[str, Any]:
            return {name: getattr(self, name) for name in own_fields(type(self))}

        def fields_after(self, fields: Fields) -> Fields:
            """The field values after this event: the one rule the aggregate, the views
            and the agents all fold events with. A new dict, never the old one changed
            (a pending Created event must not see later changes)."""
            return fields

    class Created(Event, Aggregate.Created):
        tenant: str
        settings: dict[str, Any]

        def fields_after(self, fields: Fields) -> Fields:
            return dict(self.settings)

    class SettingsChanged(Event):
        def fields_after(self, fields: Fields) -> Fields:
            return {**fields, **self.changed_fields()}

        def apply(self, aggregate: Configured) -> None:
            aggregate.settings = self.fields_after(aggregate.settings)

    class Enabled(Event):
        def fields_after(self, fields: Fields) -> Fields:
            return {**fields, "enabled": True}

        def apply(self, aggregate: Configured) -> None:
            aggregate.settings = self.fields_after(aggregate.settings)

    class Disabled(Event):
        def fields_after(self, fields: Fields) -> Fields:
            return {**fields, "enabled": False}

        def apply(self, aggregate: Configured) -> None:
            aggregate.settings = self.fields_after(aggregate.settings)

    class Deleted(Event):
        def apply(self, aggregate: Configured) -> None:
            aggregate.__dict__["_deleted"] = True

    tenant: str
    settings: Fields

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        """Events replace the settings dict and its values, never change them in place,
        so a copy to change needs only its own dict and pending list."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin.__dict__["settings"] = dict(self.settings)
        twin.__dict__["_pending_events"] = list(self.pending_events)
        return twin

    @property
    def deleted(self) -> bool:
        return bool(getattr(self, "_deleted", False))

    @classmethod
    def create(cls, tenant: str, settings: Fields, meta: CommandMeta) -> Self:
        return cls._create(
            cls.Created, tenant=tenant, settings=dict(settings), actor=meta.actor,
            reason=meta.reason, request_id=meta.request_id,
        )

    # Fields added after the first release: their value where older events lack them.
    DEFAULTS: ClassVar[Fields] = {}

    # Which event class records a change of which settings field; subclasses fill it.
    EVENT_FOR_FIELD: ClassVar[dict[str, type[Configured.SettingsChanged]]] = {}

    @property
    def etag(self) -> str:
        return etag_for(self.version)

    def check_etag(self, etag: str) -> None:
        if etag and etag != self.etag:
            raise ConflictError(
                f"{self.KIND} {self.id} has changed since it was read (etag {etag}, now "
                f"{self.etag}); read it again and reapply your change"
            )

    def check_live(self) -> None:
        if self.deleted:
            raise NotFoundError(f"{self.KIND} {self.id} was deleted")

    def change_settings(self, new: Fields, meta: CommandMeta) -> None:
        """Triggers one event per group of changed fields, in a stable order."""
        changed = {k for k, v in new.items() if self.settings.get(k, self.DEFAULTS.get(k)) != v}
        if "enabled" in changed:
            changed.discard("enabled")
            toggle = self.Enabled if new["enabled"] else self.Disabled
            self.trigger_event(toggle, **meta.event_kwargs())
        for event_class in dict.fromkeys(self.EVENT_FOR_FIELD[k] for k in sorted(changed)):
            event_class = self.refine_event(event_class, new)
            self.trigger_event(event_class, **{n: new[n] for n in own_fields(event_class)},
                               **meta.event_kwargs())

    def refine_event(
        self, event_class: type[Configured.SettingsChanged], new: Fields
    ) -> type[Configured.SettingsChanged]:
        """Lets a subclass pick a more precise event name for the same fields."""
        return event_class

    def delete(self, meta: CommandMeta) -> None:
        self.check_live()
        self.trigger_event(self.Deleted, **meta.event_kwargs())


_OWN_FIELDS: dict[type, tuple[str, ...]] = {}


def own_fields(event_class: type) -> tuple[str, ...]:
    """The fields an event class adds to the common ones (cached: projections ask often)."""
    names = _OWN_FIELDS.get(event_class)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(event_class)
                      if f.name not in BASE_FIELDS)
        _OWN_FIELDS[event_class] = names
    return names


def etag_for(version: int) -> str:
    return f'W/"{version}"'


GENERIC_EVENT_NAMES = frozenset({"Created", "Deleted", "Enabled", "Disabled"})


def event_name(event: Any) -> str:
    """`TrunkCreated` for `Trunk.Created`; specific names such as `ServerChanged` as they are."""
    return class_event_name(type(event))


def class_event_name(event_class: type) -> str:
    name = _EVENT_NAMES.get(event_class)
    if name is None:
        owner, _, own = event_class.__qualname__.rpartition(".")
        name = _EVENT_NAMES[event_class] = f"{owner}{own}" if own in GENERIC_EVENT_NAMES else own
    return name


_EVENT_NAMES: dict[type, str] = {}


def uuid_for(namespace: UUID, *parts: str) -> UUID:

    return uuid5(namespace, "\x1f".join(parts))
