"""The command-side application: every command runs in a unit of work whose changes are
saved atomically; concurrent commands can be committed together in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Recording

from domain.catalog import TenantCatalog
from domain.errors import DomainError
from domain.routes import InboundRoute, OutboundRoute
from domain.trunk import Trunk
from domain.unit_of_work import UnitOfWork

R = TypeVar("R")
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
    name = "trunkplane"
    snapshotting_intervals: ClassVar[dict[Any, int]] = {
        Trunk: 50, OutboundRoute: 50, InboundRoute: 50, TenantCatalog: 100,
    }

    def execute(self, command: Command[R]) -> Done[R]:
        """Runs one command and saves its changes, retrying when another writer won a race."""
        for attempt in range(CONFLICT_RETRIES):
            uow = UnitOfWork(self.repository)
            try:
                result = command(uow)
            except DomainError as error:
                return Done(None, error, self.head())
            try:
                return Done(result, None, self._save(uow.changed()))
            except IntegrityError:
                log.debug("write conflict, attempt %d; retrying with fresh state", attempt + 1)
        raise IntegrityError("gave up after repeated write conflicts")

    def execute_batch(self, commands: Sequence[Command[Any]]) -> list[Done[Any]]:
        """Runs commands one after another on shared state and commits them in one
        transaction (group commit). A command that fails leaves no trace; if the combined
        save conflicts with another writer, each command is retried on its own."""
        batch = UnitOfWork(self.repository)
        outcomes: list[tuple[Any, BaseException | None]] = []
        for command in commands:
            child = batch.child()
            try:
                outcomes.append((command(child), None))
                child.commit()
            except DomainError as error:
                outcomes.append((None, error))
        try:
            position = self._save(batch.changed())
        except IntegrityError:
            return [
                self.execute(command) if error is None else Done(None, error, self.head())
                for command, (_, error) in zip(commands, outcomes, strict=True)
            ]
        return [Done(result, error, position) for result, error in outcomes]

    def _save(self, aggregates: list[Aggregate]) -> int:
        if not aggregates:
            return self.head()
        recordings: list[Recording[UUID]] = self.save(*aggregates)
        return max(r.notification.id for r in recordings)

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0

    def catalog(self, tenant: str) -> TenantCatalog | None:
        try:
            found: Aggregate = self.repository.get(TenantCatalog.id_for(tenant))
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, TenantCatalog) else None

    def aggregate(self, aggregate_id: UUID) -> Aggregate | None:
        try:
            found: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return found

    def history(self, aggregate_id: UUID) -> list[Any]:
        return list(self.events.get(aggregate_id))
