"""A unit of work: the aggregates one or more commands read and changed, saved together."""

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
        self._seen: dict[UUID, Aggregate] = {}

    def find(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        """The aggregate as this unit of work sees it, or None if it never existed."""
        if aggregate_id in self._seen:
            found: Any = self._seen[aggregate_id]
        elif self._parent is not None:
            parent_copy = self._parent.find(aggregate_id, kind)
            found = copy.deepcopy(parent_copy) if parent_copy is not None else None
        else:
            try:
                found = self._repository.get(aggregate_id)
            except AggregateNotFoundError:
                return None
        if found is None:
            return None
        if not isinstance(found, kind):
            return None
        self._seen[aggregate_id] = found
        return found

    def add(self, aggregate: Aggregate) -> None:
        self._seen[aggregate.id] = aggregate

    def child(self) -> UnitOfWork:
        """A nested unit of work whose changes reach this one only through `commit`."""
        return UnitOfWork(self._repository, parent=self)

    def commit(self) -> None:
        assert self._parent is not None
        self._parent._seen.update(self._seen)

    def changed(self) -> list[Aggregate]:
        return [a for a in self._seen.values() if a.pending_events]
