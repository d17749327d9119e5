"""What the trunk and route servicers share: tenant checks and running a command."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from eventsourcing.persistence import PersistenceError

from domain.application import Command, Done
from domain.errors import DomainError, ValidationError
from infra.command_bus import CommandBus
from infra.grpc_api.errors import abort, abort_store
from projections.config_view import ConfigView

T = TypeVar("T")
TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class ServicerBase:
    def __init__(self, bus: CommandBus, view: ConfigView, default_tenant: str) -> None:
        self.bus = bus
        self.view = view
        self.default_tenant = default_tenant

    def tenant(self, context: grpc.ServicerContext, tenant: str) -> str:
        name = tenant or self.default_tenant
        if not TENANT.match(name):
            abort(context, ValidationError.single(
                "tenant", f"'{tenant}' is not a tenant id (a-z, 0-9, '-', '_', up to 64)"))
        return name

    def run(self, context: grpc.ServicerContext, command: Command[Any],
            field_prefix: str = "") -> Done[Any]:
        try:
            done = self.bus.run(command)
        except PersistenceError as error:
            abort_store(context, error)
        if isinstance(done.error, DomainError):
            abort(context, done.error, field_prefix)
        return done

    def read(self, context: grpc.ServicerContext, query: Callable[[], T]) -> T:
        try:
            return query()
        except DomainError as error:
            abort(context, error)
        except PersistenceError as error:
            abort_store(context, error)
