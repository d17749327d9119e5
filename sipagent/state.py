"""The agent's desired state: every trunk and route of the tenants it owns, and their
PBXes, folded from the event feed. Redelivered events are skipped by version and early
ones wait for their predecessors (`VersionGate`). A Kafka rebalance first revokes every
partition, then assigns the new share: the tenants of partitions assigned again are kept
as they are (their trunks stay registered), the others are released to whoever takes
them over, who starts from their state (`restore`, from the state topic the owners write
with `changes`) and reads only the events after it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from domain.calls import PbxAccess
from domain.catalog import TenantCatalog
from domain.feeds import AggregateState, FeedItem, StatePosition, VersionGate
from domain.model import Configured
from domain.pbx import Pbx
from domain.routes import InboundRoute, OutboundRoute
from domain.trunk import Trunk
from sipagent.pbx_directory import SourceIndex, access_of

Listener = Callable[[str, str, dict[str, Any] | None], None]  # tenant, trunk id, settings
Release = Callable[[str, str], None]  # tenant, trunk id: now held by another agent
CATALOG = "catalog"  # the kind of a tenant's catalog (route order and policy) in snapshots
ORDER = TenantCatalog.OutboundOrderChanged.__qualname__
POLICY = TenantCatalog.PolicyChanged.__qualname__


def whole_state(event: Any) -> bool:
    """Events that set all they describe, depending on no earlier event of theirs."""
    return isinstance(event, Configured.Created | TenantCatalog.OutboundOrderChanged
                      | TenantCatalog.PolicyChanged)


@dataclass
class TenantState:
    trunks: dict[str, dict[str, Any]] = field(default_factory=dict)
    outbound: dict[str, dict[str, Any]] = field(default_factory=dict)
    inbound: dict[str, dict[str, Any]] = field(default_factory=dict)
    outbound_order: list[str] = field(default_factory=list)
    partition: int = 0
    policy: dict[str, Any] = field(default_factory=dict)
    pbx: dict[str, Any] | None = None  # the PBX access settings, password in clear


class AgentState:
    """Thread-safe: the feed loop applies, the SIP engine and admission read. It is the
    B2BUA's `domain.calls.PbxDirectory`."""

    def __init__(self, on_trunk: Listener | None = None,
                 on_release: Release | None = None, track: bool = False) -> None:
        self._gate = VersionGate(whole_state)
        # `track`: remember what changed since the last `changes()` (a distributed agent,
        # which writes its tenants' state to the state topic), and the offsets read
        self.track = track
        self._kinds: dict[UUID, str] = {}
        self._dirty: set[UUID] = set()
        self._next: dict[int, int] = {}  # partition -> offset after the last event read
        self._written: dict[int, int] = {}  # partition -> the position last written
        self.restored = 0  # aggregates taken from snapshots
        self._tenants: dict[str, TenantState] = {}
        self._owner: dict[UUID, str] = {}
        self._lock = threading.RLock()
        self._revoked: set[int] | None = None  # revoked, not yet assigned again
        self.partitions: tuple[int, ...] = ()  # the last assignment
        self.on_trunk = on_trunk
        self.on_release = on_release
        self.applied = 0
        self.skipped = 0
        self.position = 0
        self._pbxes: dict[str, PbxAccess] = {}
        self._sources = SourceIndex(())
        self._pbx_changed = False
        self.broken = False  # a batch failed half-applied: no snapshot is written after it

    def apply(self, items: Sequence[FeedItem]) -> int:
        """Each tenant a batch changes gets a new TenantState, published when the batch is
        done: readers get a consistent snapshot without copying, and a batch copies a
        tenant's tables once however many of its events it holds."""
        applied = 0
        with self._lock:
            drafts: dict[str, TenantState] = {}
            try:
                applied = self._apply_all(items, drafts)
            except BaseException:
                # the versions moved but the drafts are lost: snapshots written now would
                # carry new versions with old settings, and every later owner would keep
                # them; write none (the positions stay where the state was whole)
                self.broken = True
                raise
            self._tenants.update(drafts)
            self.applied += applied
            if self._pbx_changed:
                self._index_pbxes()
        return applied

    def _apply_all(self, items: Sequence[FeedItem], drafts: dict[str, TenantState]) -> int:
        applied = 0
        for item in items:
            self._owner[item.event.originator_id] = item.tenant
            if item.offset >= 0:
                self._next[item.partition] = max(self._next.get(item.partition, 0),
                                                 item.offset + 1)
            taken = 0
            for ready in self._gate.release(item, item.event):
                self._apply(ready, self._draft(ready.tenant, drafts))
                self._gate.applied(ready.event)
                if self.track:
                    self._dirty.add(ready.event.originator_id)
                self.position = max(self.position, ready.position)
                taken += 1
            applied += taken
            if not taken and item.event.originator_version <= self._version(item):
                self.skipped += 1
        return applied

    def _index_pbxes(self) -> None:
        """Rebuilt whole when a PBX changes: rare, and readers never see half an index."""
        self._pbx_changed = False
        self._pbxes = {name: access_of(name, state.pbx)
                       for name, state in self._tenants.items()
                       if state.pbx is not None and state.pbx["enabled"]}
        self._sources = SourceIndex(self._pbxes.values())

    def _draft(self, name: str, drafts: dict[str, TenantState]) -> TenantState:
        draft = drafts.get(name)
        if draft is None:
            old = self._tenants.get(name)
            draft = drafts[name] = TenantState() if old is None else TenantState(
                dict(old.trunks), dict(old.outbound), dict(old.inbound),
                list(old.outbound_order), old.partition, dict(old.policy), old.pbx)
        return draft

    def _apply(self, item: FeedItem, tenant: TenantState) -> None:
        event = item.event
        tenant.partition = item.partition
        if isinstance(event, TenantCatalog.OutboundOrderChanged):
            self._kinds[event.originator_id] = CATALOG
            tenant.outbound_order = list(event.order)
            return
        if isinstance(event, TenantCatalog.PolicyChanged):
            self._kinds[event.originator_id] = CATALOG
            tenant.policy = dict(event.policy)
            return
        kind = self._kind(event)
        self._kinds[event.originator_id] = kind
        self._owner[event.originator_id] = item.tenant
        if kind == "pbx":
            tenant.pbx = _changed(tenant.pbx, event)
            self._pbx_changed = True
            return
        table = {"trunk": tenant.trunks, "outbound": tenant.outbound,
                 "inbound": tenant.inbound}[kind]
        key = str(event.originator_id)
        if isinstance(event, Configured.Created):
            table[key] = dict(event.settings)
        elif isinstance(event, Configured.Deleted):
            table.pop(key, None)
        elif key in table:
            table[key] = _changed(table[key], event) or {}
        if kind == "trunk" and self.on_trunk is not None:
            self.on_trunk(item.tenant, key, table.get(key))

    def _version(self, item: FeedItem) -> int:
        return self._gate.version(item.event)

    @property
    def held(self) -> int:
        """Events waiting for an earlier version of their aggregate."""
        return self._gate.held

    @staticmethod
    def _kind(event: Any) -> str:
        owner = type(event).__qualname__.rpartition(".")[0]
        return {aggregate.__name__: aggregate.SUBJECT
                for aggregate in (Trunk, OutboundRoute, InboundRoute, Pbx)}[owner]

    def revoked(self, partitions: Sequence[int]) -> None:
        """A rebalance began: keep everything until the new share is known (most of it
        usually comes back), so nothing is unregistered in between."""
        with self._lock:
            self._revoked = set(partitions) | (self._revoked or set())

    def assigned(self, partitions: Sequence[int]) -> list[str]:
        """The rebalance ended with `partitions`: releases the tenants of partitions
        revoked and not assigned again."""
        with self._lock:
            lost = (self._revoked or set()) - set(partitions)
            self._revoked = None
            self.partitions = tuple(sorted(partitions))
        return self.forget_partitions(sorted(lost)) if lost else []

    def revoked_since(self) -> bool:
        """A rebalance is under way (partitions revoked, none assigned yet)."""
        with self._lock:
            return self._revoked is not None

    def forget_partitions(self, partitions: Sequence[int]) -> list[str]:
        """Drops the tenants carried by partitions this agent no longer owns; their
        trunks are released (left registered for the new owner to take over), not
        unregistered."""
        lost = set(partitions)
        with self._lock:
            gone = [t for t, s in self._tenants.items() if s.partition in lost]
            for name in gone:
                state = self._tenants.pop(name)
                for trunk_id in state.trunks:
                    if self.on_release is not None:
                        self.on_release(name, trunk_id)
                    elif self.on_trunk is not None:
                        self.on_trunk(name, trunk_id, None)
            self._gate.forget(lambda i: self._owner.get(i) not in gone)
            self._owner = {i: t for i, t in self._owner.items() if t not in gone}
            self._kinds = {i: k for i, k in self._kinds.items() if i in self._owner}
            self._dirty &= self._owner.keys()
            for partition in lost:
                self._next.pop(partition, None)
                self._written.pop(partition, None)
            self._index_pbxes()
        return gone

    def restore(self, partition: int, states: Sequence[AggregateState],
                offset: int | None) -> int:
        """Takes the tenants of a newly assigned partition from their snapshots (the
        state topic) instead of their history: their tables, and the versions applied,
        so copies of the events they reflect are skipped as redeliveries are. `offset`:
        the partition's position the snapshots reflect (None: none recorded). Returns
        how many aggregates it took."""
        with self._lock:
            drafts: dict[str, TenantState] = {}
            trunks: list[tuple[str, str, dict[str, Any] | None]] = []
            for state in states:
                tenant = self._draft(state.tenant, drafts)
                tenant.partition = partition
                self._owner[state.aggregate_id] = state.tenant
                self._kinds[state.aggregate_id] = state.kind
                if state.kind == CATALOG:
                    self._gate.restore(state.aggregate_id, state.order_version, ORDER)
                    self._gate.restore(state.aggregate_id, state.policy_version, POLICY)
                    tenant.outbound_order = list(state.order)
                    if state.policy_version:
                        tenant.policy = dict(state.policy or {})
                    continue
                self._gate.restore(state.aggregate_id, state.version)
                settings = None if state.settings is None else dict(state.settings)
                if state.kind == "pbx":
                    tenant.pbx = settings
                    self._pbx_changed = True
                    continue
                table = {"trunk": tenant.trunks, "outbound": tenant.outbound,
                         "inbound": tenant.inbound}[state.kind]
                key = str(state.aggregate_id)
                if settings is None:
                    table.pop(key, None)
                else:
                    table[key] = settings
                    if state.kind == "trunk":
                        trunks.append((state.tenant, key, settings))
            self._tenants.update(drafts)
            if offset is not None:
                self._next[partition] = max(self._next.get(partition, 0), offset)
                self._written[partition] = offset
            if self._pbx_changed:
                self._index_pbxes()
            self.restored += len(states)
            if self.on_trunk is not None:
                for name, trunk_id, settings in trunks:
                    self.on_trunk(name, trunk_id, settings)
        return len(states)

    def changes(self) -> tuple[list[tuple[int, AggregateState]], list[StatePosition]]:
        """What the state topic lacks: the aggregates changed since the last call (with
        the partition of their tenant), then the position of each partition held that
        moved, never past an event still waiting for its predecessor. Nothing during a
        rebalance. Give what could not be written back with `unwritten`, and report the
        positions written with `written`."""
        with self._lock:
            if self._revoked is not None or not self.track or self.broken:
                return [], []
            held = set(self.partitions)
            dirty, self._dirty = self._dirty, set()
            states = []
            for aggregate in dirty:
                name = self._owner.get(aggregate)
                tenant = self._tenants.get(name) if name is not None else None
                if tenant is not None and name is not None and tenant.partition in held:
                    states.append((tenant.partition, self._snapshot(aggregate, name, tenant)))
            waiting: dict[int, int] = {}
            for item in self._gate.held_items():
                if item.offset >= 0:
                    waiting[item.partition] = min(waiting.get(item.partition, item.offset),
                                                  item.offset)
            positions = []
            for partition in sorted(held & self._next.keys()):
                offset = min(self._next[partition], waiting.get(partition, self._next[partition]))
                if self._written.get(partition) != offset:
                    positions.append(StatePosition(partition, offset))
            return states, positions

    def _snapshot(self, aggregate: UUID, name: str, tenant: TenantState) -> AggregateState:
        kind = self._kinds[aggregate]
        if kind == CATALOG:
            order = self._gate.applied_version(aggregate, ORDER)
            policy = self._gate.applied_version(aggregate, POLICY)
            return AggregateState(name, aggregate, CATALOG, max(order, policy),
                                  order=tuple(tenant.outbound_order), order_version=order,
                                  policy=dict(tenant.policy) if policy else None,
                                  policy_version=policy)
        settings = tenant.pbx if kind == "pbx" else {
            "trunk": tenant.trunks, "outbound": tenant.outbound,
            "inbound": tenant.inbound}[kind].get(str(aggregate))
        return AggregateState(name, aggregate, kind, self._gate.applied_version(aggregate),
                              settings)

    def written(self, positions: Sequence[StatePosition]) -> None:
        with self._lock:
            for position in positions:
                self._written[position.partition] = position.offset

    def position_written(self, partition: int) -> int | None:
        """The partition's position last written (or restored); None: none yet."""
        with self._lock:
            return self._written.get(partition)

    def unwritten(self, states: Sequence[tuple[int, AggregateState]]) -> None:
        """The state topic did not take these: they go out with the next changes."""
        with self._lock:
            self._dirty |= {s.aggregate_id for _, s in states if s.aggregate_id in self._owner}

    # The two reads admission makes on every call take no lock: the asyncio gRPC server
    # answers admission on its event loop, and the feed's thread holds the lock for a
    # whole batch or a partition's restore (seconds at 10,000 aggregates), which froze
    # every call, stream and health check of the server. A tenant is a snapshot, replaced
    # whole and never changed once published; a dict's get and copy are atomic in CPython.
    def tenants(self) -> list[str]:
        return sorted(self._tenants.copy())

    def tenant(self, name: str) -> TenantState | None:
        """A snapshot: never changed once published (read it, do not change it)."""
        return self._tenants.get(name)

    def trunk_count(self) -> int:
        with self._lock:
            return sum(len(s.trunks) for s in self._tenants.values())

    def pbx_for_source(self, address: str) -> PbxAccess | None:
        """The tenant whose PBX may send calls from this address: the most specific source
        network wins; None when it is nobody's, or two tenants' equally specific networks
        hold it."""
        return self._sources.best(address)

    def pbx_candidates(self, address: str) -> list[PbxAccess]:
        """Every PBX whose networks hold the address, most specific first (ties included),
        for telling tenants apart by their digest username."""
        return self._sources.candidates(address)

    def pbx(self, tenant: str) -> PbxAccess | None:
        """The tenant's PBX access; None when it is not set, disabled, or not held here."""
        return self._pbxes.get(tenant)


def _changed(settings: dict[str, Any] | None, event: Any) -> dict[str, Any] | None:
    """Settings after a Created, Enabled, Disabled or field event (None stays None: an
    event of an aggregate whose creation this agent never saw)."""
    if settings is None and not isinstance(event, Configured.Created):
        return None
    fields: dict[str, Any] = event.fields_after(settings or {})
    return fields
