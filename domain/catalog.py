"""A tenant's catalog: which trunks and routes exist, their names and the order of the
outbound routes. It is the aggregate that guards the rules spanning several trunks and
routes (unique names, no deleting a trunk a route uses), so concurrent commands that would
break them conflict on its version instead of both succeeding."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.guard import default_guard
from domain.model import CommandMeta, Subject, uuid_for
from domain.text import name_key

NAMESPACE = UUID("6f1c1a56-9a43-4a55-9d0e-2f0c3b7a1e11")
TRUNK, OUTBOUND, INBOUND = Subject.TRUNK, Subject.OUTBOUND, Subject.INBOUND
Entry = dict[str, Any]


class TenantCatalog(Aggregate):
    class Event(Aggregate.Event):
        actor: str
        reason: str
        request_id: str

    class Created(Event, Aggregate.Created):
        tenant: str

    class EntryRecorded(Event):
        kind: str
        entry_id: str
        entry: dict[str, Any]

        def apply(self, aggregate: TenantCatalog) -> None:
            aggregate.entries[self.kind][self.entry_id] = dict(self.entry)

    class EntryRemoved(Event):
        kind: str
        entry_id: str

        def apply(self, aggregate: TenantCatalog) -> None:
            aggregate.entries[self.kind].pop(self.entry_id, None)

    class PolicyChanged(Event):
        """The tenant's own toll-fraud guard (every route's calls count against it)."""

        tenant: str
        policy: dict[str, Any]

        def apply(self, aggregate: TenantCatalog) -> None:
            aggregate.policy = dict(self.policy)

    class FraudAlertRaised(Event):
        """An agent saw an unusual pattern of calls: recorded for the auditors, changes
        nothing."""

        tenant: str
        kind: str  # burst | new_country | after_hours
        detail: str
        extension: str
        route_id: str

        def apply(self, aggregate: TenantCatalog) -> None:
            pass

    class OutboundOrderChanged(Event):
        tenant: str
        order: list[str]

        def apply(self, aggregate: TenantCatalog) -> None:
            aggregate.outbound_order = list(self.order)

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.policy: dict[str, Any] = default_policy()
        self.entries: dict[str, dict[str, Entry]] = {TRUNK: {}, OUTBOUND: {}, INBOUND: {}}
        self.outbound_order: list[str] = []

    def __deepcopy__(self, memo: dict[int, Any]) -> TenantCatalog:
        """Entries are replaced, never changed in place: copying the maps is enough."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin.entries = {kind: dict(entries) for kind, entries in self.entries.items()}
        twin.outbound_order = list(self.outbound_order)
        twin.__dict__["_pending_events"] = list(self.pending_events)
        return twin

    @staticmethod
    def id_for(tenant: str) -> UUID:
        return uuid_for(NAMESPACE, "catalog", tenant)

    @classmethod
    def start(cls, tenant: str, meta: CommandMeta) -> TenantCatalog:
        return cls._create(
            cls.Created, id=cls.id_for(tenant), tenant=tenant, **meta.event_kwargs()
        )

    def find(self, kind: str, ref: str, key: str = "name") -> str | None:
        """The id of the entry whose id equals ref, or whose `key` is the same name as ref
        (`domain.text.name_key`: ignoring case, width, NFC/NFD and look-alike letters)."""
        entries = self.entries[kind]
        if ref in entries:
            return ref
        wanted = name_key(ref)
        for entry_id, entry in entries.items():
            if name_key(str(entry.get(key, ""))) == wanted:
                return entry_id
        return None

    def set_policy(self, policy: dict[str, Any], meta: CommandMeta) -> None:
        if policy != self.policy:
            self.trigger_event(self.PolicyChanged, tenant=self.tenant, policy=policy,
                               **meta.event_kwargs())

    def raise_alert(self, kind: str, detail: str, extension: str, route_id: str,
                    meta: CommandMeta) -> None:
        self.trigger_event(self.FraudAlertRaised, tenant=self.tenant, kind=kind, detail=detail,
                           extension=extension, route_id=route_id, **meta.event_kwargs())

    def routes_using(self, trunk_id: str) -> list[str]:
        outbound = [e["name"] for e in self.entries[OUTBOUND].values()
                    if trunk_id in e["trunk_ids"]]
        inbound = [f"inbound {rid}" for rid, e in self.entries[INBOUND].items()
                   if e["trunk_id"] == trunk_id]
        return sorted(outbound) + inbound

    def record(self, kind: str, entry_id: UUID, entry: Entry, meta: CommandMeta) -> None:
        if self.entries[kind].get(str(entry_id)) != entry:
            self.trigger_event(self.EntryRecorded, kind=kind, entry_id=str(entry_id),
                               entry=entry, **meta.event_kwargs())

    def remove(self, kind: str, entry_id: UUID, meta: CommandMeta) -> None:
        self.trigger_event(self.EntryRemoved, kind=kind, entry_id=str(entry_id),
                           **meta.event_kwargs())
        if str(entry_id) in self.outbound_order:
            self.place_outbound(entry_id, None, meta, remove=True)

    def place_outbound(self, route_id: UUID, position: int | None, meta: CommandMeta,
                       *, remove: bool = False) -> None:
        """Puts a route at a 1-based position (None or 0 = keep it, or append a new one)."""
        order = [r for r in self.outbound_order if r != str(route_id)]
        if not remove:
            current = self.outbound_order.index(str(route_id)) + 1 if str(
                route_id) in self.outbound_order else len(order) + 1
            target = position or current
            order.insert(min(max(target, 1), len(order) + 1) - 1, str(route_id))
        if order != self.outbound_order:
            self.trigger_event(self.OutboundOrderChanged, tenant=self.tenant, order=order,
                               **meta.event_kwargs())


def default_policy() -> dict[str, Any]:
    return {"guard": default_guard(), "business_hours": None}


class CommandReceipt(Aggregate):
    """Remembers that a request id was used, so a retried request changes nothing."""

    class Created(Aggregate.Created):
        tenant: str
        command: str
        fingerprint: str
        resource_id: str

    def __init__(self, tenant: str, command: str, fingerprint: str, resource_id: str) -> None:
        self.tenant = tenant
        self.command = command
        self.fingerprint = fingerprint
        self.resource_id = resource_id

    @staticmethod
    def id_for(tenant: str, key: str) -> UUID:
        return uuid_for(NAMESPACE, "receipt", tenant, key)

    @classmethod
    def issue(cls, tenant: str, key: str, command: str, fingerprint: str,
              resource_id: UUID) -> CommandReceipt:
        return cls._create(cls.Created, id=cls.id_for(tenant, key), tenant=tenant,
                           command=command, fingerprint=fingerprint,
                           resource_id=str(resource_id))
