"""The composition root: builds the store, the command bus, the views and the gRPC server.
`serve`, and later `control` and `agent`, start from here and nowhere else."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from domain.application import TrunkplaneApp
from domain.status import StatusSink
from infra.auth import TOKENS_FILE, Authenticator, TokenStore, ensure_admin_token
from infra.command_bus import CommandBus
from infra.grpc_api.audit import AuditServicer
from infra.grpc_api.context import CallContextInterceptor
from infra.grpc_api.limits import RateLimiter
from infra.grpc_api.ops import OpsServicer
from infra.grpc_api.routes import RouteServicer
from infra.grpc_api.servicer_base import ServicerBase
from infra.grpc_api.trunks import TrunkServicer
from infra.keys import cipher_key
from infra.metrics import Metrics
from infra.settings import Settings
from infra.tls import ensure_self_signed
from infra.views import open_views, view_store
from projections.audit import HistoryReader
from projections.config_view import ConfigView
from projections.db import Database
from projections.runner import ProjectionRunner
from projections.status import StatusView
from trunkplane.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    ops_pb2,
    ops_pb2_grpc,
    route_pb2,
    route_pb2_grpc,
    trunk_pb2,
    trunk_pb2_grpc,
)

log = logging.getLogger("trunkplane")
MAX_SEND = 256 * 1024 * 1024  # exports of large tenants
SERVICES = (
    trunk_pb2.DESCRIPTOR.services_by_name["TrunkService"].full_name,
    route_pb2.DESCRIPTOR.services_by_name["RouteService"].full_name,
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
    ops_pb2.DESCRIPTOR.services_by_name["OpsService"].full_name,
)


def build_app(settings: Settings) -> TrunkplaneApp:
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return TrunkplaneApp(env=settings.store_env(cipher_key(settings)))


@dataclass
class ControlPlane:
    app: TrunkplaneApp
    server: grpc.Server
    port: int
    health: health.HealthServicer
    runner: ProjectionRunner
    views: Database
    status_sink: StatusSink
    metrics: Metrics
    metrics_port: int
    bus: CommandBus

    def stop(self, grace: float = 5.0) -> None:
        for name in ("", *SERVICES):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.server.stop(grace).wait()
        self.metrics.stop()
        self.runner.stop()
        self.views.close()
        self.app.close()


def start(settings: Settings, workers: int = 32) -> ControlPlane:
    app = build_app(settings)
    views = open_views(settings)
    store = view_store(settings, views)
    runner = ProjectionRunner(app, store)
    view = ConfigView(store, app.head, runner.wait_for)
    bus = CommandBus(app, on_saved=runner.notify)
    metrics = Metrics()
    limiter = RateLimiter(settings.rate_limit, 2 * settings.rate_limit) if (
        settings.rate_limit) else None
    authenticator = Authenticator(TokenStore(settings.data_dir / TOKENS_FILE))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        interceptors=[CallContextInterceptor(authenticator, metrics.observe_call, limiter)],
        options=[("grpc.max_receive_message_length", settings.max_message_bytes),
                 ("grpc.max_send_message_length", MAX_SEND)])
    base = ServicerBase(bus, view, HistoryReader(store), settings.tenant)
    status = StatusView(views)
    trunk_pb2_grpc.add_TrunkServiceServicer_to_server(TrunkServicer(base, status), server)
    route_pb2_grpc.add_RouteServiceServicer_to_server(
        RouteServicer(bus, view, base.history, settings.tenant), server)
    audit_pb2_grpc.add_AuditServiceServicer_to_server(
        AuditServicer(base, runner.wait_for), server)
    ops_pb2_grpc.add_OpsServiceServicer_to_server(OpsServicer(app, store, runner), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = _listen(server, settings)
    if port == 0:
        views.close()
        app.close()
        raise OSError(f"cannot listen on {settings.listen}")
    metrics.watch(app, store, status)
    metrics_port = 0 if settings.metrics_listen == "off" else metrics.serve(
        settings.metrics_listen)
    runner.start()
    server.start()
    for name in ("", *SERVICES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return ControlPlane(app, server, port, health_servicer, runner, views, status, metrics,
                        metrics_port, bus)


def _listen(server: grpc.Server, settings: Settings) -> int:
    if not settings.tls:
        return server.add_insecure_port(settings.listen)
    if settings.tls_cert:
        cert, key = Path(settings.tls_cert), Path(settings.tls_key)
    else:
        cert, key = ensure_self_signed(settings.data_dir)
    client_ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    credentials = grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())], root_certificates=client_ca,
        require_client_auth=client_ca is not None)
    return server.add_secure_port(settings.listen, credentials)


def serve(settings: Settings) -> None:
    """Runs the embedded service until SIGINT or SIGTERM."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    admin_token = ensure_admin_token(settings.data_dir)
    plane = start(settings)
    host = settings.listen.rsplit(":", 1)[0]
    if admin_token is not None:
        log.info("first start: an admin token is in %s (the CLI reads it from there)",
                 admin_token)
    if settings.tls and not settings.tls_cert:
        log.info("TLS with the self-signed certificate %s (the CLI trusts it from there)",
                 settings.data_dir / "tls.crt")
    log.info("trunkplane serving gRPC on %s:%d (store: %s, tenant: %s)", host, plane.port,
             settings.describe_store(), settings.tenant)
    if plane.metrics_port:
        metrics_host = settings.metrics_listen.rpartition(":")[0]
        log.info("metrics on http://%s:%d/metrics", metrics_host, plane.metrics_port)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stopping.wait()
    log.info("stopping: finishing calls in flight")
    plane.stop()
