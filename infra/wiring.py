"""The composition root: builds the store, the command bus, the views and the gRPC server.
`serve`, and later `control` and `agent`, start from here and nowhere else."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from domain import commands
from domain.application import TrunkplaneApp
from domain.feeds import MemoryPositions, StoreEventFeed
from domain.model import CommandMeta
from domain.status import AgentDirectory, StatusSink, TrunkState
from infra.auth import TOKENS_FILE, Authenticator, TokenStore, ensure_admin_token
from infra.command_bus import CommandBus
from infra.grpc_api.agent import AgentServicer
from infra.grpc_api.audit import AuditServicer
from infra.grpc_api.context import CallContextInterceptor
from infra.grpc_api.limits import RateLimiter
from infra.grpc_api.ops import OpsServicer
from infra.grpc_api.routes import RouteServicer
from infra.grpc_api.servicer_base import ServicerBase
from infra.grpc_api.trunks import TrunkServicer
from infra.keys import cipher_key
from infra.leader import PROJECTIONS_LOCK, RELAY_LOCK, Leader
from infra.metrics import Metrics
from infra.settings import Settings, SettingsError
from infra.tls import ensure_self_signed
from infra.views import open_views, view_store
from projections.audit import HistoryReader
from projections.config_view import ConfigView
from projections.db import Database
from projections.runner import ProjectionRunner
from projections.status import StatusView
from sipagent.admission import Admission
from sipagent.engine import Reporter, SipAgent
from sipagent.fraud import Alert, AlertRecorder, FraudDetector
from sipagent.runner import AgentRunner, Heartbeat
from sipagent.state import AgentState
from trunkplane.v1 import (
    agent_pb2,
    agent_pb2_grpc,
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
AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name


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
    agent: _EmbeddedAgent | None = None  # embedded mode: the agent follows the store
    relay: Any = None  # distributed mode: infra.kafka.Relay
    status_pump: Any = None  # distributed mode: infra.kafka.StatusPump

    def stop(self, grace: float = 5.0) -> None:
        for name in ("", *SERVICES):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.server.stop(grace).wait()
        self.metrics.stop()
        for part in (self.agent, self.relay, self.status_pump):
            if part is not None:
                part.stop()
        self.runner.stop()
        self.views.close()
        self.app.close()


def start(settings: Settings, workers: int = 32, mode: str = "serve") -> ControlPlane:
    """mode `serve`: everything in one process, the agent reading the store; `control`:
    the control plane of the distributed mode, publishing to Kafka (settings.kafka)."""
    if mode == "control" and settings.kafka is None:
        raise SettingsError("trunkplane control needs TRUNKPLANE_KAFKA_BOOTSTRAP (host:port of "
                            "the Kafka brokers); `trunkplane serve` runs without Kafka")
    app = build_app(settings)
    views = open_views(settings)
    store = view_store(settings, views)
    runner = ProjectionRunner(app, store, leader=Leader(settings.database_url,
                                                        PROJECTIONS_LOCK))
    view = ConfigView(store, app.head, runner.wait_for)
    listeners: list[Callable[[], None]] = [runner.notify]

    def on_saved() -> None:
        for notify in listeners:
            notify()

    bus = CommandBus(app, on_saved=on_saved)
    metrics = Metrics()
    server = _grpc_server(settings, metrics, workers)
    base = ServicerBase(bus, view, HistoryReader(store), settings.tenant)
    status = StatusView(views)
    trunk_pb2_grpc.add_TrunkServiceServicer_to_server(TrunkServicer(base, status), server)
    route_pb2_grpc.add_RouteServiceServicer_to_server(
        RouteServicer(bus, view, base.history, settings.tenant), server)
    audit_pb2_grpc.add_AuditServiceServicer_to_server(
        AuditServicer(base, runner.wait_for), server)
    ops_pb2_grpc.add_OpsServiceServicer_to_server(OpsServicer(app, store, runner, status),
                                                  server)
    served = list(SERVICES)
    embedded: _EmbeddedAgent | None = None
    if mode == "serve":
        embedded = _embedded_agent(settings, bus, status, metrics)
        listeners.append(embedded.feed.notify)
        agent_pb2_grpc.add_AgentServiceServicer_to_server(
            AgentServicer(embedded.admission, settings.tenant), server)
        served.append(AGENT_SERVICE)
    health_servicer = _health(server, served)
    port = _listen(server, settings)
    if port == 0:
        views.close()
        app.close()
        raise OSError(f"cannot listen on {settings.listen}")
    if embedded is not None:
        embedded.heartbeat.address = advertised(settings, port)
    metrics.watch(app, store, status)
    relay = pump = None
    if mode != "serve":
        relay, pump = _distributed(settings, app, views, status)
        listeners.append(relay.notify)
        metrics.watch_relay(app, relay)
    metrics_port = 0 if settings.metrics_listen == "off" else metrics.serve(
        settings.metrics_listen)
    runner.start()
    if embedded is not None:
        embedded.start()
    for part in (relay, pump):
        if part is not None:
            part.start()
    server.start()
    for name in ("", *served):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return ControlPlane(app, server, port, health_servicer, runner, views, status, metrics,
                        metrics_port, bus, embedded, relay, pump)


@dataclass
class _EmbeddedAgent:
    """An agent's parts: the feed loop, the SIP engine, admission, status reporting."""

    feed: Any
    runner: AgentRunner
    sip: SipAgent | None
    reporter: Reporter
    admission: Admission
    alerts: AlertRecorder
    heartbeat: Heartbeat

    def start(self) -> None:
        if self.sip is not None:
            self.sip.start()
        else:
            self.reporter.start_flushing()
        self.runner.start()
        self.admission.start()
        self.heartbeat.start()

    def stop(self) -> None:
        self.heartbeat.stop()
        self.admission.stop()
        self.alerts.stop()
        self.runner.stop()
        if self.sip is not None:
            self.sip.stop()  # unREGISTERs what it holds
        else:
            self.reporter.stop_flushing()


def _agent_parts(settings: Settings, feed: Any, sink: StatusSink, directory: AgentDirectory,
                 agent_id: str, metrics: Metrics, record: Callable[[Alert], None],
                 name: str = "agent", on_revoked: bool = False) -> _EmbeddedAgent:
    sip_settings = replace(settings.sip, agent_id=agent_id) if settings.sip else None
    sip = SipAgent(sip_settings, sink) if sip_settings is not None else None
    reporter = sip.reporter if sip is not None else Reporter(sink, agent_id)
    state = AgentState(sip.update if sip is not None else None)
    if on_revoked:
        feed.on_revoked = state.forget_partitions
    fallback = TrunkState.UNREGISTERED if sip is None else TrunkState.REGISTERING
    why = "TRUNKPLANE_SIP=off: not checked on the wire" if sip is None else "no report yet"

    def on_calls(tenant: str, trunk_id: str, inbound: int, outbound: int) -> None:
        reporter.calls(tenant, trunk_id, inbound, outbound, fallback, why)

    def show(alert: Alert) -> None:
        reporter.alert(alert.tenant, alert.trunk_id, f"{alert.kind}: {alert.detail}")

    alerts = AlertRecorder(show, record)
    admission = Admission(state, sip.live_state if sip is not None else None,
                          ttl=settings.lease_ttl, on_calls=on_calls,
                          last_success=sip.last_success if sip is not None else None,
                          detector=FraudDetector(alerts))
    metrics.watch_agent(state, feed, sip, admission)
    return _EmbeddedAgent(feed, AgentRunner(feed, state, name=name), sip, reporter, admission,
                          alerts, Heartbeat(directory, agent_id, state))


def _embedded_agent(settings: Settings, bus: CommandBus, status: StatusView,
                    metrics: Metrics) -> _EmbeddedAgent:
    feed = StoreEventFeed(bus.app, "agent", MemoryPositions())
    agent_id = settings.sip.agent_id if settings.sip else "embedded"
    meta = CommandMeta(actor=f"agent:{agent_id}", reason="fraud alert")

    def record(alert: Alert) -> None:
        bus.run(partial(commands.record_fraud_alert, tenant=alert.tenant, kind=alert.kind,
                        detail=alert.detail, extension=alert.extension,
                        route_id=alert.route_id, meta=meta), None).unwrap()

    parts = _agent_parts(settings, feed, status, status, agent_id, metrics, record)
    for doc in status.all():  # calls that were up when this process stopped
        if doc["agent_id"] == agent_id and (doc["active_inbound"] or doc["active_outbound"]):
            parts.admission.seed(doc["tenant"], doc["trunk_id"], doc["active_inbound"],
                                 doc["active_outbound"])
    return parts


def _control_alerts(settings: Settings) -> Callable[[Alert], None]:
    """A distributed agent records alerts through a control plane's RouteService
    (TRUNKPLANE_CONTROL, with a token of role agent), or only logs them."""
    address = settings.control.address if settings.control else ""
    if not address or settings.control is None:
        def unrecorded(alert: Alert) -> None:
            log.warning("fraud alert not recorded in the history: set TRUNKPLANE_CONTROL "
                        "and TRUNKPLANE_CONTROL_TOKEN on the agents")
        return unrecorded
    control = settings.control
    if control.tls:
        ca = Path(control.ca).read_bytes() if control.ca else None
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca))
    else:
        channel = grpc.insecure_channel(address)
    stub = route_pb2_grpc.RouteServiceStub(channel)
    metadata = (("authorization", f"Bearer {control.token}"),) if control.token else ()

    def record(alert: Alert) -> None:
        stub.RecordFraudAlert(route_pb2.RecordFraudAlertRequest(
            tenant=alert.tenant, kind=alert.kind, detail=alert.detail,
            extension=alert.extension, route_id=alert.route_id), metadata=metadata,
            timeout=10)

    return record


def advertised(settings: Settings, port: int) -> str:
    """Where others reach this process's gRPC: TRUNKPLANE_ADVERTISE, or the listen host
    (the host name when it listens on every address) and the port it got."""
    if settings.advertise:
        return settings.advertise
    host = settings.listen.rsplit(":", 1)[0].strip("[]")
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming, not binding
        host = socket.gethostname()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _grpc_server(settings: Settings, metrics: Metrics, workers: int) -> grpc.Server:
    limiter = RateLimiter(settings.rate_limit, 2 * settings.rate_limit) if (
        settings.rate_limit) else None
    authenticator = Authenticator(TokenStore(settings.data_dir / TOKENS_FILE))
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        interceptors=[CallContextInterceptor(authenticator, metrics.observe_call, limiter)],
        options=[("grpc.max_receive_message_length", settings.max_message_bytes),
                 ("grpc.max_send_message_length", MAX_SEND)])


def _health(server: grpc.Server, served: list[str]) -> health.HealthServicer:
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection(
        (*served, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return servicer


def wire_codec(settings: Settings) -> Any:
    from infra.avro import Codec, WireCipher

    kafka = settings.kafka
    assert kafka is not None
    if not kafka.wire_key:
        raise SettingsError(
            "the distributed mode needs TRUNKPLANE_WIRE_KEY (the same on control planes and "
            "agents; it seals passwords on the broker), for example "
            f"w1:{WireCipher.new_key()}")
    try:
        return Codec(WireCipher(kafka.wire_key))
    except ValueError as error:
        raise SettingsError(str(error)) from None


def _distributed(settings: Settings, app: TrunkplaneApp, views: Database,
                 status: StatusView) -> tuple[Any, Any]:
    from infra.kafka import DatabasePositions, KafkaStatusFeed, Relay, StatusPump

    kafka = settings.kafka
    assert kafka is not None
    codec = wire_codec(settings)
    relay = Relay(app, codec, kafka, DatabasePositions(views),
                  leader=Leader(settings.database_url, RELAY_LOCK))
    feed = KafkaStatusFeed(kafka, "trunkplane-control", codec, client_id="trunkplane-control")
    return relay, StatusPump(feed, status.publish, status.announce)


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


def serve(settings: Settings, mode: str = "serve") -> None:
    """Runs the embedded service (or, mode `control`, a control plane of the distributed
    mode) until SIGINT or SIGTERM."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    admin_token = ensure_admin_token(settings.data_dir)
    plane = start(settings, mode=mode)
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
    if plane.relay is not None and settings.kafka is not None:
        log.info("relaying events to %s at %s", settings.kafka.events_topic,
                 settings.kafka.bootstrap)
    _wait_for_signal()
    log.info("stopping: finishing calls in flight")
    plane.stop()


def run_agent(settings: Settings) -> None:
    """`trunkplane agent`: one member of the agents' consumer group. It owns the tenants of
    the partitions it is assigned, rebuilding their state from the log."""
    from infra.kafka import KafkaEventFeed, KafkaStatusSink, seed_from_status

    kafka = settings.kafka
    if kafka is None:
        raise SettingsError("trunkplane agent needs TRUNKPLANE_KAFKA_BOOTSTRAP (host:port of "
                            "the Kafka brokers)")
    agent_id = kafka.agent_id or socket.gethostname()
    codec = wire_codec(settings)
    sink = KafkaStatusSink(kafka, codec)
    feed = KafkaEventFeed(kafka, kafka.agent_group, codec, from_start=True,
                          client_id=f"trunkplane-agent-{agent_id}")
    metrics = Metrics()
    parts = _agent_parts(settings, feed, sink, sink, agent_id, metrics,
                         _control_alerts(settings), name=f"agent-{agent_id}",
                         on_revoked=True)

    def on_assigned(partitions: list[int]) -> None:
        seeded = seed_from_status(kafka, codec, partitions, parts.admission.seed,
                                  settings.lease_ttl)
        if seeded:
            log.info("agent %s: calls in progress on %d trunks of its new tenants hold their "
                     "channels", agent_id, seeded)

    feed.on_assigned = on_assigned
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    admin_token = ensure_admin_token(settings.data_dir)
    server = _grpc_server(settings, metrics, 32)
    agent_pb2_grpc.add_AgentServiceServicer_to_server(
        AgentServicer(parts.admission, settings.tenant), server)
    health_servicer = _health(server, [AGENT_SERVICE])
    port = _listen(server, settings)
    if port == 0:
        raise OSError(f"cannot listen on {settings.listen}")
    parts.heartbeat.address = advertised(settings, port)
    if settings.metrics_listen != "off":
        metrics_port = metrics.serve(settings.metrics_listen)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_listen.rpartition(":")[0],
                 metrics_port)
    parts.start()
    server.start()
    for name in ("", AGENT_SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if admin_token is not None:
        log.info("first start: an admin token is in %s", admin_token)
    log.info("agent %s: consuming %s at %s in group %s; AgentService on %s:%d", agent_id,
             kafka.events_topic, kafka.bootstrap, kafka.agent_group,
             settings.listen.rsplit(":", 1)[0], port)
    _wait_for_signal()
    log.info("agent %s: stopping (its partitions go to the other agents)", agent_id)
    for name in ("", AGENT_SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    server.stop(5).wait()
    parts.stop()
    sink.close()
    metrics.stop()


def _wait_for_signal() -> None:
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stopping.wait()
