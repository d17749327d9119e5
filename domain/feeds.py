"""How events reach their consumers (the agents, the relay): an `EventFeed` reads after a
position, waits for more, and commits what its consumer has applied. In one process the
feed is the event store's notification log; in the distributed mode a Kafka consumer group
(infra.messaging). Consumers see the same domain events either way, and skip redeliveries with
a `VersionGate`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from domain.application import TrunkplaneApp
from domain.catalog import TenantCatalog
from domain.pbx import Pbx
from domain.routes import InboundRoute, OutboundRoute
from domain.trunk import Trunk

log = logging.getLogger(__name__)


def published_events() -> list[type[Any]]:
    """The event classes consumers outside the control plane receive: every change of a
    trunk or a route, the outbound route order, the tenant's policy and its PBX access.
    The catalog's name index and request receipts are bookkeeping the control plane
    derives; they stay in the store."""
    classes: list[type[Any]] = []
    for aggregate in (Trunk, OutboundRoute, InboundRoute):
        classes.append(aggregate.Created)
        classes.extend(dict.fromkeys(aggregate.EVENT_FOR_FIELD.values()))
        if aggregate is Trunk:
            classes.append(Trunk.CodecsReordered)
        classes += [aggregate.Enabled, aggregate.Disabled, aggregate.Deleted]
    classes += [TenantCatalog.OutboundOrderChanged, TenantCatalog.PolicyChanged]
    classes += [Pbx.Created, *dict.fromkeys(Pbx.EVENT_FOR_FIELD.values()), Pbx.Enabled,
                Pbx.Disabled]  # a tenant's PBX is never deleted, only emptied or disabled
    return classes


PUBLISHED = frozenset(published_events())


@dataclass(frozen=True)
class FeedItem:
    position: int  # the event's position in the control plane's notification log
    tenant: str
    event: Any
    partition: int = 0  # which share of the tenants carried it (Kafka partition)
    offset: int = -1  # its offset in that partition of the events topic (-1: not Kafka)


@dataclass(frozen=True)
class AggregateState:
    """One aggregate as the agents fold it, at the versions applied: what an agent taking
    a tenant over starts from instead of the aggregate's whole history (the state topic).
    `settings` is None for a deleted trunk, route or PBX (its version still tells later
    copies of its events apart); the tenant's catalog carries its route order and policy,
    each with the version of the event that set it (they apply independently)."""

    tenant: str
    aggregate_id: UUID
    kind: str  # Subject's value: trunk, outbound, inbound, pbx; or "catalog"
    version: int = 0
    settings: dict[str, Any] | None = None
    order: tuple[str, ...] = ()
    order_version: int = 0
    policy: dict[str, Any] | None = None
    policy_version: int = 0


@dataclass(frozen=True)
class StatePosition:
    """Where a new owner of an events partition reads from after the state topic: every
    event before `offset` is reflected in the state records written before this one."""

    partition: int
    offset: int


class EventFeed(Protocol):
    def read(self, limit: int = 500, timeout: float = 1.0) -> list[FeedItem]:
        """The next events after the feed's position, in order per tenant; waits up to
        `timeout` seconds when there are none yet."""
        ...

    def commit(self) -> None:
        """Everything read so far is applied: a feed reopened with the same name resumes
        after it."""
        ...

    def close(self) -> None: ...


class PositionStore(Protocol):
    def load(self, name: str) -> int: ...
    def save(self, name: str, position: int) -> None: ...


class MemoryPositions:
    def __init__(self) -> None:
        self._positions: dict[str, int] = {}

    def load(self, name: str) -> int:
        return self._positions.get(name, 0)

    def save(self, name: str, position: int) -> None:
        self._positions[name] = position


class TenantIndex:
    """Which tenant an event belongs to. Created events and the route order carry it;
    for the rest the aggregate is read once and remembered."""

    def __init__(self, app: TrunkplaneApp) -> None:
        self._app = app
        self._tenants: dict[UUID, str] = {}

    def tenant_of(self, event: Any) -> str:
        tenant = getattr(event, "tenant", None)
        if isinstance(tenant, str):
            self._tenants[event.originator_id] = tenant
            return tenant
        known = self._tenants.get(event.originator_id)
        if known is None:
            aggregate = self._app.aggregate(event.originator_id)
            known = str(getattr(aggregate, "tenant", ""))
            self._tenants[event.originator_id] = known
        return known


class StoreEventFeed:
    """The embedded feed: the event store's notification log, after a saved position."""

    def __init__(self, app: TrunkplaneApp, name: str, positions: PositionStore,
                 poll: float = 0.05) -> None:
        self._app = app
        self._name = name
        self._positions = positions
        self._poll = poll
        self._tenants = TenantIndex(app)
        self._position = positions.load(name)
        self._read = self._position
        self._wake = threading.Event()
        self._closed = False

    def notify(self) -> None:
        """New events were stored: stop waiting."""
        self._wake.set()

    def read(self, limit: int = 500, timeout: float = 1.0) -> list[FeedItem]:
        waited = 0.0
        while True:
            notes = self._app.recorder.select_notifications(
                self._read, limit, inclusive_of_start=False)
            if notes:
                break
            if waited >= timeout or self._closed:
                return []
            step = min(self._poll, timeout - waited)
            self._wake.wait(step)
            self._wake.clear()
            waited += step
        items = []
        for note in notes:
            event = self._app.mapper.to_domain_event(note)
            if type(event) in PUBLISHED:
                items.append(FeedItem(note.id, self._tenants.tenant_of(event), event))
        self._read = notes[-1].id
        return items

    def commit(self) -> None:
        if self._read != self._position:
            self._positions.save(self._name, self._read)
            self._position = self._read

    @property
    def name(self) -> str:
        return self._name

    @property
    def position(self) -> int:
        """The committed position."""
        return self._position

    @property
    def uncommitted(self) -> bool:
        """read() went past the committed position (maybe over events it filtered out)."""
        return self._read != self._position

    def rewind(self, reload: bool = False) -> None:
        """The next read starts after the committed position again (`reload`: as saved
        in the position store, e.g. by another process)."""
        if reload:
            self._position = self._positions.load(self._name)
        self._read = self._position

    def close(self) -> None:
        self._closed = True
        self._wake.set()


class VersionGate:
    """Orders each aggregate's events for a consumer that may receive them late, twice or
    out of order (a broker emptied and refilled, a redelivery). An event at or below the
    version applied is a duplicate; a change that arrives before the version it follows
    is held until that version has been applied, never dropped. Only what the consumer
    reports applied (`applied`) counts: a held or skipped event is not recorded, so the
    event it waits for is still taken when it comes.

    Events that carry the whole state they set (a Created, the catalog's route order and
    policy) depend on nothing before them: the newest applies, kept per event type when
    one aggregate has several such kinds. `max_held` bounds what waits in memory; beyond
    it the oldest waiting event is dropped and counted in `dropped` (the consumer then
    needs its partition read again)."""

    def __init__(self, whole_state: Callable[[Any], bool] = lambda event: False,
                 max_held: int = 100_000) -> None:
        self._whole_state = whole_state
        self._applied: dict[Any, int] = {}
        self._held: dict[UUID, dict[int, Any]] = {}
        self._max_held = max_held
        self.held = 0
        self.dropped = 0

    def _key(self, event: Any) -> Any:
        if self._whole_state(event) and int(event.originator_version) > 1:
            return (event.originator_id, type(event).__qualname__)
        return event.originator_id

    def release(self, item: Any, event: Any) -> Iterator[Any]:
        """Yields the items to apply now, in order: `item` (whose event is `event`) unless
        it is a duplicate or must wait, then every held successor it unblocks. Call
        `applied` for each one before taking the next."""
        version = int(event.originator_version)
        key = self._key(event)
        last = self._applied.get(key, 0)
        if version <= last:
            return
        if not self._whole_state(event) and version > last + 1:
            self._hold(event.originator_id, version, item)
            return
        yield item
        waiting = self._held.get(event.originator_id)
        while waiting:
            after = waiting.pop(self._applied.get(event.originator_id, 0) + 1, None)
            if after is None:
                break
            self.held -= 1
            yield after
        if waiting == {}:
            self._held.pop(event.originator_id, None)

    def version(self, event: Any) -> int:
        """The version applied of what `event` changes (0: nothing yet)."""
        return self._applied.get(self._key(event), 0)

    def applied(self, event: Any) -> None:
        key = self._key(event)
        self._applied[key] = max(self._applied.get(key, 0), int(event.originator_version))

    def restore(self, aggregate: UUID, version: int, whole_state: str = "") -> None:
        """Records `version` as applied, as if its events had come (a state restored from
        a snapshot); `whole_state`: the qualified name of a whole-state event type, whose
        versions are kept apart (see `_key`)."""
        if version <= 0:
            return
        key: Any = (aggregate, whole_state) if whole_state and version > 1 else aggregate
        self._applied[key] = max(self._applied.get(key, 0), version)

    def applied_version(self, aggregate: UUID, whole_state: str = "") -> int:
        """The version applied of an aggregate, or of one of its whole-state event types."""
        if whole_state:
            return self._applied.get((aggregate, whole_state), 0)
        return self._applied.get(aggregate, 0)

    def held_items(self) -> Iterator[Any]:
        """Every item waiting for its predecessor."""
        for waiting in self._held.values():
            yield from waiting.values()

    def _hold(self, aggregate: UUID, version: int, item: Any) -> None:
        waiting = self._held.setdefault(aggregate, {})
        if version not in waiting:
            self.held += 1
        waiting[version] = item
        if self.held > self._max_held:
            oldest = next(iter(self._held))
            lost = self._held[oldest].pop(min(self._held[oldest]))
            if not self._held[oldest]:
                del self._held[oldest]
            self.held -= 1
            self.dropped += 1
            log.error("more than %d events wait for their predecessors; dropped %r",
                      self._max_held, lost)

    def waiting(self) -> dict[UUID, tuple[int, list[int]]]:
        """Per aggregate with held events: the version applied and the versions held."""
        return {k: (self._applied.get(k, 0), sorted(v)) for k, v in self._held.items()}

    def forget(self, keep: Callable[[UUID], bool]) -> None:
        self._applied = {k: v for k, v in self._applied.items()
                         if keep(k[0] if isinstance(k, tuple) else k)}
        held = {k: v for k, v in self._held.items() if keep(k)}
        self.held = sum(len(v) for v in held.values())
        self._held = held
