"""The views a `trunkplane replay --into DIR` built, served read-only in this process, so the
CLI's ordinary read commands (trunk list/get/history/status, route list/get/history/resolve,
route policy) show the configuration as of the replayed point: `--views DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from domain.application import Command, Done
from domain.errors import PreconditionError
from infra.config.settings import Settings, SettingsError
from infra.grpc_api.aio import AioServer
from infra.grpc_api.context import AioCallContextInterceptor
from infra.grpc_api.routes import RouteServicer
from infra.grpc_api.servicer_base import ServicerBase
from infra.grpc_api.trunks import TrunkServicer
from infra.store.command_bus import CommandBus
from infra.store.views import view_store
from projections.audit import HistoryReader
from projections.calls import CallStore
from projections.config_view import ConfigView
from projections.db import SqliteDatabase
from projections.status import StatusView
from trunkplane.v1 import route_pb2_grpc, trunk_pb2_grpc


class ReadOnlyBus(CommandBus):
    """Refuses every command: a replayed view is a picture of the past."""

    def __init__(self, directory: Path) -> None:  # no app: nothing is ever written
        self.directory = directory

    def run(self, command: Command[Any], deadline: float | None = None) -> Done[Any]:
        return Done(None, PreconditionError(
            f"{self.directory} holds replayed views, which are read-only; leave out --views "
            "to change the live configuration"), 0)


class ReplayedViews:
    """A gRPC server on a loopback port of its own over DIR/views.sqlite."""

    def __init__(self, settings: Settings, directory: Path) -> None:
        if not (directory / "views.sqlite").exists() or not (directory / "REPLAY.json").exists():
            raise SettingsError(f"--views {directory}: not a directory `trunkplane replay "
                                "--into` wrote (no views.sqlite and REPLAY.json)")
        self.db = SqliteDatabase(directory / "views.sqlite")
        store = view_store(settings, self.db)
        reached = store.position("config", store.live("config"))[0]
        view = ConfigView(store, lambda: reached, lambda position, wait: True)
        base = ServicerBase(ReadOnlyBus(directory), view, HistoryReader(store), settings.tenant)
        # the asyncio server, as every process's: WatchTrunkStatus is a coroutine
        self.server = AioServer(4, lambda pool: [AioCallContextInterceptor(None, pool)])
        trunk_pb2_grpc.add_TrunkServiceServicer_to_server(
            TrunkServicer(base, StatusView(self.db), CallStore(self.db)), self.server)
        route_pb2_grpc.add_RouteServiceServicer_to_server(
            RouteServicer(base.bus, view, base.history, settings.tenant), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.stop(None)
        self.db.close()
