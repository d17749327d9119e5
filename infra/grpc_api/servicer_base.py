"""What the servicers share: tenant checks, running a command, reading a view."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from eventsourcing.persistence import PersistenceError

from domain.application import Command, Done
from domain.errors import DomainError
from infra.grpc_api.context import check_tenant, current
from infra.grpc_api.errors import abort, abort_store
from infra.store.command_bus import CommandBus, DeadlineExpiredError
from projections.audit import ChangeQuery, ChangeRow, HistoryReader
from projections.config_view import READ_WAIT, ConfigView
from projections.db import DATABASE_ERRORS

T = TypeVar("T")


class ServicerBase:
    def __init__(self, bus: CommandBus, view: ConfigView, history: HistoryReader,
                 default_tenant: str) -> None:
        self.bus = bus
        self.view = view
        self.history = history
        self.default_tenant = default_tenant

    def tenant(self, context: grpc.ServicerContext, tenant: str) -> str:
        """The request's tenant (the default when empty): a valid id, and one the caller's
        token may act in."""
        name = tenant or self.default_tenant
        try:
            check_tenant(name)
        except DomainError as error:
            abort(context, error)
        return name

    def run(self, context: grpc.ServicerContext, command: Command[Any],
            field_prefix: str = "") -> Done[Any]:
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        try:
            done = self.bus.run(command, deadline)
        except PersistenceError as error:
            abort_store(context, error)
        except DeadlineExpiredError:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                          "the deadline passed before the command's turn; nothing was recorded")
        if isinstance(done.error, DomainError):
            abort(context, done.error, field_prefix)
        if done.error is not None:
            context.abort(grpc.StatusCode.INTERNAL, "internal error, nothing was recorded; "
                          f"logged under request id {current().request_id}")
        return done

    def read(self, context: grpc.ServicerContext, query: Callable[[], T]) -> T:
        try:
            return query()
        except DomainError as error:
            abort(context, error)
        except (PersistenceError, *DATABASE_ERRORS) as error:
            abort_store(context, error)

    def ready(self, context: grpc.ServicerContext, min_position: int) -> int:
        """Waits for the views as the request asks; tells the caller what they reflect."""
        remaining = context.time_remaining()
        wait = READ_WAIT if remaining is None else max(0.0, min(READ_WAIT, remaining * 0.8))
        position = self.read(context, lambda: self.view.ready(min_position, wait))
        context.set_trailing_metadata((("x-view-position", str(position)),))
        return position

    def changes_of(self, tenant: str, kind: str, ref: str) -> tuple[str, list[ChangeRow]]:
        subject_id = self.view.subject_id(tenant, kind, ref)
        return subject_id, list(self.history.all(ChangeQuery(tenant=tenant,
                                                             subject_id=subject_id)))
