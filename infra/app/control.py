"""The control plane's assembly: the store, the command bus, the views and the gRPC
services; in `serve` also the embedded agent, in `control` the Kafka relay and status pump.
Every process is built on infra.app.lifecycle and nowhere else."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from domain.application import TrunkplaneApp
from domain.model import CommandMeta
from domain.operations import OperatorAction
from infra.app.agent import AgentParts, check_broker, embedded_agent, wire_codec
from infra.app.lifecycle import Closing, Process, advertised, wait_for_signal
from infra.config.settings import Settings, SettingsError
from infra.grpc_api.audit import AuditServicer
from infra.grpc_api.ops import OpsServicer
from infra.grpc_api.routes import RouteServicer
from infra.grpc_api.servicer_base import ServicerBase
from infra.grpc_api.trunks import TrunkServicer
from infra.ledger.recorders import adopt_existing_log
from infra.ledger.service import LedgerService
from infra.ledger.signing import load_signer
from infra.notify.notifier import Notifier, NotifierMetrics
from infra.notify.service import AlertServicer
from infra.ops.metrics import Metrics
from infra.security.keys import cipher_key
from infra.security.tokens import ensure_admin_token
from infra.store.command_bus import CommandBus
from infra.store.leader import (
    NOTIFIER_LOCK,
    PROJECTIONS_LOCK,
    RELAY_LOCK,
    Leader,
    startup_lock,
)
from infra.store.views import open_views, view_store
from infra.web.app import WebConsole, for_service
from projections.audit import HistoryReader
from projections.calls import CallStore
from projections.config_view import ConfigView
from projections.db import Database
from projections.runner import ProjectionRunner
from projections.status import StatusView
from projections.status_feed import StatusFeed
from sipagent.runner import Ticker
from trunkplane.v1 import (
    alert_pb2,
    alert_pb2_grpc,
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


def _name(module: Any, service: str) -> str:
    return str(module.DESCRIPTOR.services_by_name[service].full_name)


SERVICES = (_name(trunk_pb2, "TrunkService"), _name(route_pb2, "RouteService"),
            _name(audit_pb2, "AuditService"), _name(ops_pb2, "OpsService"),
            _name(alert_pb2, "AlertService"))


def build_app(settings: Settings) -> TrunkplaneApp:
    """The store, its recorder writing each event's proof and signing the tree head of
    every write batch."""
    if not settings.database_url:
        settings.private_data_dir()
    app = TrunkplaneApp(env=settings.store_env(cipher_key(settings)))
    app.recorder.proof.signer = load_signer(settings)  # type: ignore[attr-defined]
    adopted = adopt_existing_log(app.recorder)  # type: ignore[arg-type]
    if adopted:
        log.warning("the store held %d events written before the proof existed: they are "
                    "its first leaves, as they are now", adopted)
    return app


def check_cipher_key(app: TrunkplaneApp) -> None:
    """The newest stored event opens with the cipher key: a process with another key
    would serve reads from the views and fail every write; it must not start."""
    head = app.head()
    if not head:
        return
    notes = app.recorder.select_notifications(head, 1)
    try:
        for note in notes:
            app.mapper.to_domain_event(note)
    except Exception as error:
        app.close()
        raise SettingsError(
            f"TRUNKPLANE_CIPHER_KEY (or the data directory's key file) does not open the "
            f"stored events ({type(error).__name__}: {error} at log position {head}): set "
            "the key the store was written with") from None


@dataclass
class ControlPlane:
    process: Process
    app: TrunkplaneApp
    runner: ProjectionRunner
    views: Database
    status_sink: StatusView
    bus: CommandBus
    calls: CallStore  # the call records the agents report
    agent: AgentParts | None = None  # embedded mode: the agent follows the store
    relay: Any = None  # distributed mode: infra.messaging.relay.Relay
    status_pump: Any = None  # distributed mode: infra.messaging.feeds.StatusPump
    witness: Any = None  # distributed mode: infra.messaging.witness.HeadWitness
    notifier: Notifier | None = None  # off with TRUNKPLANE_NOTIFY=off
    call_pump: Any = None  # distributed mode: infra.messaging.calls.CallPump
    status_feed: StatusFeed[Any] | None = None  # what WatchTrunkStatus streams read

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def metrics_port(self) -> int:
        return self.process.metrics_port

    @property
    def metrics(self) -> Metrics:
        return self.process.metrics

    def stop(self, grace: float = 5.0) -> None:
        self.process.stop(grace)


def start(settings: Settings, workers: int = 32, mode: str = "serve") -> ControlPlane:
    """mode `serve`: everything in one process, the agent reading the store; `control`:
    the control plane of the distributed mode, publishing to Kafka (settings.kafka)."""
    if mode == "control" and settings.kafka is None:
        raise SettingsError("trunkplane control needs TRUNKPLANE_KAFKA_BOOTSTRAP (host:port of "
                            "the Kafka brokers); `trunkplane serve` runs without Kafka")
    with startup_lock(settings.database_url):  # control planes starting on an empty store
        return _start(settings, workers, mode)


def _start(settings: Settings, workers: int, mode: str) -> ControlPlane:
    app = build_app(settings)
    check_cipher_key(app)
    process = Process(settings, Metrics(), workers, RefusalRecorder(app))
    process.add(Closing(app.close))
    views = open_views(settings)
    process.add(Closing(views.close))
    store = view_store(settings, views)
    runner = ProjectionRunner(app, store, leader=Leader(settings.database_url,
                                                        PROJECTIONS_LOCK))
    process.add(runner)
    listeners: list[Callable[[], None]] = [runner.notify]

    def on_saved() -> None:
        for notify in listeners:
            notify()

    bus = CommandBus(app, on_saved=on_saved)
    status = StatusView(views, silent_after=settings.silent_after)
    plane = ControlPlane(process, app, runner, views, status, bus, CallStore(views))
    if settings.notify.enabled:
        plane.notifier = Notifier(app, store, status, settings,
                                  Leader(settings.database_url, NOTIFIER_LOCK))
        plane.notifier.audit_check = _ledger(app).verify
        process.metrics.registry.register(NotifierMetrics(plane.notifier.outbox))
        listeners.append(plane.notifier.notify)
        process.add(plane.notifier)
    _serve_control(plane, ConfigView(store, app.head, runner.wait_for), store)
    if mode == "serve":
        plane.agent = embedded_agent(settings, bus, status, plane.calls, process.metrics)
        listeners.append(plane.agent.feed.notify)
        process.add(plane.agent)
        plane.agent.serve_admission(process, settings.tenant)
    port = process.listen()
    web = for_service(settings, port)
    if web is not None:
        process.add(WebConsole(web))
    if plane.agent is not None:
        plane.agent.heartbeat.address = advertised(settings, port)
    process.metrics.watch(app, store, status)
    if settings.call_records_days:
        process.add(CallRetention(plane.calls, settings.call_records_days))
    if mode != "serve":
        _distributed(plane, settings, listeners)
    process.start()
    return plane


class CallRetention:
    """Hourly, the store keeps `days` of call records (every control plane prunes; a
    delete that finds nothing left is harmless)."""

    def __init__(self, calls: CallStore, days: int) -> None:
        self.calls = calls
        self.days = days
        self._ticker = Ticker("call-records-retention", 3600.0, self.prune)

    def prune(self) -> int:
        gone = self.calls.prune(datetime.now(UTC) - timedelta(days=self.days))
        if gone:
            log.info("call records: deleted %d older than %d days", gone, self.days)
        return gone

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()


def _serve_control(plane: ControlPlane, view: ConfigView, store: Any) -> None:
    process, settings = plane.process, plane.process.settings
    base = ServicerBase(plane.bus, view, HistoryReader(store), settings.tenant)
    trunks = TrunkServicer(base, plane.status_sink, plane.calls)
    plane.status_feed = trunks.feed  # the watchers' one reader of the status log
    process.add(trunks.feed)
    process.serve(SERVICES[0], partial(trunk_pb2_grpc.add_TrunkServiceServicer_to_server,
                                       trunks))
    process.serve(SERVICES[1], partial(route_pb2_grpc.add_RouteServiceServicer_to_server,
                                       RouteServicer(plane.bus, view, base.history,
                                                     settings.tenant)))
    process.serve(SERVICES[2], partial(audit_pb2_grpc.add_AuditServiceServicer_to_server,
                                       AuditServicer(base, plane.runner.wait_for,
                                                     _ledger(plane.app))))
    process.serve(SERVICES[3], partial(ops_pb2_grpc.add_OpsServiceServicer_to_server,
                                       OpsServicer(plane.app, store, plane.runner,
                                                   plane.status_sink, _ledger(plane.app))))
    process.serve(SERVICES[4], partial(alert_pb2_grpc.add_AlertServiceServicer_to_server,
                                       AlertServicer(base, plane.notifier, plane.views)))


class RefusalRecorder:
    """Calls refused for want of a role go into the history (AccessRefused), at most one
    per principal and method a minute, so a client retrying in a loop does not fill the
    log."""

    def __init__(self, app: TrunkplaneApp, every: float = 60.0) -> None:
        self.app = app
        self.every = every
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def __call__(self, principal: str, role: str, method: str, request_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get((principal, method), -self.every) < self.every:
                return
            self._last[principal, method] = now
        action = OperatorAction.record("", "access_refused", {"method": method, "role": role},
                                       CommandMeta(actor=principal, request_id=request_id))
        try:
            self.app.save(action)
        except Exception:  # the refusal stands even when it cannot be recorded
            log.warning("could not record a refused call", exc_info=True)


def _ledger(app: TrunkplaneApp) -> LedgerService:
    return LedgerService(app, app.recorder.proof.signer)  # type: ignore[attr-defined]


def _distributed(plane: ControlPlane, settings: Settings,
                 listeners: list[Callable[[], None]]) -> None:
    from infra.messaging.calls import CallPump, KafkaCallFeed
    from infra.messaging.feeds import KafkaStatusFeed, StatusPump
    from infra.messaging.relay import DatabasePositions, Relay
    from infra.messaging.witness import HEADS_LOCK, HeadWitness

    kafka = settings.kafka
    assert kafka is not None
    codec = wire_codec(settings)
    check_broker(kafka, codec)
    plane.relay = Relay(plane.app, codec, kafka, DatabasePositions(plane.views),
                        leader=Leader(settings.database_url, RELAY_LOCK))
    feed = KafkaStatusFeed(kafka, kafka.control_group, codec, client_id="trunkplane-control")
    plane.status_pump = StatusPump(feed, plane.status_sink.publish, plane.status_sink.announce)
    listeners.append(plane.relay.notify)
    plane.process.metrics.watch_relay(plane.app, plane.relay)
    if plane.notifier is not None:
        relay = plane.relay
        plane.notifier.relay_lag = lambda: plane.app.head() - relay.position
    plane.process.add(plane.relay)
    plane.process.add(plane.status_pump)
    plane.witness = HeadWitness(_ledger(plane.app).ledger, codec, kafka,
                                DatabasePositions(plane.views),
                                leader=Leader(settings.database_url, HEADS_LOCK))
    plane.process.add(plane.witness)
    plane.call_pump = CallPump(KafkaCallFeed(kafka, kafka.control_calls_group, codec,
                                             client_id="trunkplane-control-calls"),
                               plane.calls.record)
    plane.process.add(plane.call_pump)
    plane.process.metrics.watch_call_records(pump=plane.call_pump)
    plane.process.add(_Sweeper(plane.status_sink, plane.runner))


class _Sweeper:
    """Tells watchers when agents go silent or come back (the status view's sweep), on the
    process that leads the projections only, once a second."""

    def __init__(self, status: StatusView, runner: ProjectionRunner) -> None:
        leader = runner.leader
        self._ticker = Ticker("silence-sweep", 1.0, lambda: status.sweep() if (
            getattr(leader, "leading", True)) else 0)

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()


def serve(settings: Settings, mode: str = "serve") -> None:
    """Runs the embedded service (or, mode `control`, a control plane of the distributed
    mode) until SIGINT or SIGTERM."""
    settings.private_data_dir()
    admin_token = ensure_admin_token(settings.data_dir)
    plane = start(settings, mode=mode)
    if admin_token is not None:
        log.info("first start: an admin token is in %s (the CLI reads it from there)",
                 admin_token)
    if settings.tls and not settings.tls_cert:
        log.info("TLS with the self-signed certificate %s (the CLI trusts it from there)",
                 settings.data_dir / "tls.crt")
    plane.process.log_listening("trunkplane serving gRPC", f"store: {settings.describe_store()}, "
                                                           f"tenant: {settings.tenant}")
    if plane.relay is not None and settings.kafka is not None:
        log.info("relaying events to %s at %s", settings.kafka.events_topic,
                 settings.kafka.bootstrap)
    wait_for_signal()
    log.info("stopping: finishing calls in flight")
    plane.stop()
