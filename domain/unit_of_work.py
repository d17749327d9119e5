"""A unit of work: the aggregates one or more commands read and changed, saved together.

Aggregates come from the repository's cache, shared by every reader, so a unit of work
never changes one in place: `find` hands out a private copy to change, `peek` the shared
object to read."""

from __future__ import annotations

import copy
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.domain import Aggregate

A = TypeVar("A", bound=Aggregate)


class UnitOfWork:
    def __init__(self, repository: Repository[UUID], parent: UnitOfWork | None = None) -> None:
        self._repository = repository
        self._parent = parent
        self._owned: dict[UUID, Aggregate] = {}

    def peek(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        """The aggregate as this unit of work sees it, for reading only."""
        found: Any = self._owned.get(aggregate_id)
        if found is None and self._parent is not None:
            found = self._parent.peek(aggregate_id, kind)
        elif found is None:
            try:
                found = self._repository.get(aggregate_id)
            except AggregateNotFoundError:
                return None
        return found if isinstance(found, kind) else None

    def find(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        """A copy of the aggregate that this unit of work may change and will save."""
        if aggregate_id in self._owned:
            owned: Any = self._owned[aggregate_id]
            return owned if isinstance(owned, kind) else None
        shared = self.peek(aggregate_id, kind)
        if shared is None:
            return None
        mine = copy.deepcopy(shared)
        self._owned[aggregate_id] = mine
        return mine

    def writable(self, aggregate: A) -> A:
        mine = self.find(aggregate.id, type(aggregate))
        assert mine is not None
        return mine

    def add(self, aggregate: Aggregate) -> None:
        self._owned[aggregate.id] = aggregate

    def child(self) -> UnitOfWork:
        """A nested unit of work whose changes reach this one only through `commit`."""
        return UnitOfWork(self._repository, parent=self)

    def commit(self) -> None:
        assert self._parent is not None
        self._parent._owned.update(self._owned)

    def changed(self) -> list[Aggregate]:
        return [a for a in self._owned.values() if a.pending_events]

    def touched(self) -> list[UUID]:
        return list(self._owned)
