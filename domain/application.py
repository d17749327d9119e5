"""The command-side application: every command runs in a unit of work whose changes are
saved atomically; concurrent commands can be committed together in one transaction."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Recording

from domain.alerting import AlertRules, NotificationChannel
from domain.catalog import TenantCatalog
from domain.errors import DomainError
from domain.pbx import Pbx
from domain.routes import InboundRoute, OutboundRoute
from domain.trunk import Trunk
from domain.unit_of_work import UnitOfWork

R = TypeVar("R")
REFRESH_PAGE = 1000
Command = Callable[[UnitOfWork], R]
log = logging.getLogger(__name__)
CONFLICT_RETRIES = 8


@dataclass
class Done(Generic[R]):
    """What a command returned (or raised), and the log position of its events."""

    result: R | None
    error: BaseException | None
    position: int

    def unwrap(self) -> R:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class TrunkplaneApp(Application[UUID]):
    """Aggregates are cached and shared between readers. Rather than asking the store for
    newer events on every read (one query per aggregate), the cache follows the
    notification log: `refresh` reads what other processes appended since it last looked
    and evicts exactly the aggregates they changed. One cheap query when nothing changed."""

    name = "trunkplane"
    snapshotting_intervals: ClassVar[dict[Any, int]] = {
        Trunk: 50, OutboundRoute: 50, InboundRoute: 50, TenantCatalog: 100, Pbx: 50,
        NotificationChannel: 50, AlertRules: 50,
    }
    env: ClassVar[dict[str, str]] = {
        "AGGREGATE_CACHE_MAXSIZE": "10000",
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        self._refresh_lock = threading.Lock()
        self._seen = self.head()
        self.events_stored = 0

    def refresh(self) -> None:
        """Brings the shared cache up to date with the log (other writers' events)."""
        cache = self.repository.cache
        if cache is None:
            return
        with self._refresh_lock:
            head = self.head()
            while self._seen < head:
                batch = self.recorder.select_notifications(
                    self._seen, REFRESH_PAGE, stop=head, inclusive_of_start=False)
                for notification in batch:
                    aggregate_id = UUID(str(notification.originator_id))
                    cached = _cached(cache, aggregate_id)
                    if cached is not None and cached.version < notification.originator_version:
                        self._evict([aggregate_id])
                self._seen = batch[-1].id if batch else head

    def execute(self, command: Command[R]) -> Done[R]:
        """Runs one command and saves its changes, retrying when another writer won a race."""
        for attempt in range(CONFLICT_RETRIES):
            self.refresh()
            uow = UnitOfWork(self.repository)
            try:
                result = command(uow)
            except DomainError as error:
                return Done(None, error, self.head())
            try:
                return Done(result, None, self._save(uow.changed()))
            except IntegrityError:
                log.debug("write conflict, attempt %d; retrying with fresh state", attempt + 1)
                self._evict(uow.touched())
        raise IntegrityError("gave up after repeated write conflicts")

    def rehearse(self, command: Command[R]) -> Done[R]:
        """Runs a command on the current state and saves nothing: what it would do, or
        why it would be refused."""
        self.refresh()
        try:
            return Done(command(UnitOfWork(self.repository)), None, self.head())
        except DomainError as error:
            return Done(None, error, self.head())

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Snapshots the saved aggregate as it is in memory. The library's default replays
        the aggregate from the store to snapshot it, which costs more than the save."""
        if self.snapshots is None:
            return
        for aggregate_id, aggregate in processing_event.aggregates.items():
            interval = self.snapshotting_intervals.get(type(aggregate))
            crossed = interval and any(
                e.originator_id == aggregate_id and e.originator_version % interval == 0
                for e in processing_event.events)
            if crossed:
                snapshot_class: Any = getattr(type(aggregate), "Snapshot")  # noqa: B009
                self.snapshots.put([snapshot_class.take(aggregate)])

    def _evict(self, ids: list[UUID]) -> None:
        for aggregate_id in ids:
            if _cached(self.repository.cache, aggregate_id) is not None:
                self.repository.cache.get(aggregate_id, evict=True)  # type: ignore[union-attr]

    def execute_batch(self, commands: Sequence[Command[Any]]) -> list[Done[Any]]:
        """Runs commands one after another on shared state and commits them in one
        transaction (group commit). A command that fails leaves no trace; if the combined
        save conflicts with another writer, each command is retried on its own."""
        self.refresh()
        batch = UnitOfWork(self.repository)
        outcomes: list[tuple[Any, BaseException | None]] = []
        for command in commands:
            child = batch.child()
            try:
                outcomes.append((command(child), None))
                child.commit()
            except DomainError as error:
                outcomes.append((None, error))
            except Exception as error:  # a bug in one command must not fail its neighbours
                log.exception("command failed")
                outcomes.append((None, error))
        try:
            position = self._save(batch.changed())
        except IntegrityError:
            self._evict(batch.touched())
            return [
                self.execute(command) if error is None else Done(None, error, self.head())
                for command, (_, error) in zip(commands, outcomes, strict=True)
            ]
        return [Done(result, error, position) for result, error in outcomes]

    def _save(self, aggregates: list[Aggregate]) -> int:
        if not aggregates:
            return self.head()
        recordings: list[Recording[UUID]] = self.save(*aggregates)
        ids = [r.notification.id for r in recordings]
        self.events_stored += len(ids)
        with self._refresh_lock:
            if min(ids) == self._seen + 1:  # nobody else wrote in between: nothing to evict
                self._seen = max(ids)
        return max(ids)

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0

    def catalog(self, tenant: str) -> TenantCatalog | None:
        """The tenant's catalog as stored now (shared: read it, do not change it)."""
        self.refresh()
        try:
            found: Aggregate = self.repository.get(TenantCatalog.id_for(tenant))
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, TenantCatalog) else None

    def aggregate(self, aggregate_id: UUID) -> Aggregate | None:
        """The aggregate as stored now (shared: read it, do not change it)."""
        self.refresh()
        try:
            found: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return found


def _cached(cache: Any, aggregate_id: UUID) -> Aggregate | None:
    try:
        found: Aggregate | None = cache.get(aggregate_id) if cache is not None else None
    except KeyError:
        return None
    return found
