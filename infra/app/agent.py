"""The SIP agent's assembly: the feed loop, the SIP engine, admission and status reporting,
embedded in `serve` or run on its own by `trunkplane agent` (a member of the agents'
consumer group, owning the tenants of the partitions it is assigned)."""

from __future__ import annotations

import gc
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from domain import commands
from domain.feeds import EventFeed, MemoryPositions, StoreEventFeed
from domain.model import CommandMeta
from domain.status import AgentDirectory, StatusSink, TrunkState
from infra.app.lifecycle import Closing, Process, advertised, wait_for_signal
from infra.config.settings import Settings, SettingsError
from infra.grpc_api.agent import AgentServicer
from infra.grpc_api.clients import alert_recorder
from infra.ops.metrics import Metrics
from infra.security.sealing import WireCipher
from infra.security.tokens import ensure_admin_token
from infra.store.command_bus import CommandBus
from projections.calls import CallStore
from projections.status import StatusView
from sipagent.admission import Admission
from sipagent.call_records import QueuedCallSink, Writer
from sipagent.calls.b2bua import B2BUA
from sipagent.engine import Reporter, SipAgent
from sipagent.fraud import Alert, AlertRecorder, FraudDetector
from sipagent.handover import TakenOver, hand_over
from sipagent.runner import AgentRunner, Heartbeat
from sipagent.state import AgentState
from trunkplane.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger("trunkplane")
SEED_TIMEOUT = 30.0  # seconds a take-over's scan of the calls in progress may take
AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name


@dataclass
class AgentParts:
    """An agent's parts, started and stopped as one part of its process."""

    feed: Any  # an EventFeed that may also take notify() and on_revoked/on_assigned
    runner: AgentRunner
    sip: SipAgent | None
    reporter: Reporter
    admission: Admission
    alerts: AlertRecorder
    heartbeat: Heartbeat
    calls: QueuedCallSink  # the B2BUA's CallRecordSink
    b2bua: B2BUA | None = None  # None: no SIP, or TRUNKPLANE_PBX_LISTEN=off
    # distributed agents: makes the watch that tells a stopping agent which of its trunks
    # other agents took over (made before it leaves the group), and the wait for them
    takeover: Callable[[], TakenOver] | None = None
    handover_wait: float = 0.0

    def start(self) -> None:
        self.calls.start()
        if self.sip is not None:
            self.sip.start()
            if self.b2bua is not None:  # the PBX face, on the engine's loop
                self.sip.run(self.b2bua.open())
        else:
            self.reporter.start_flushing()
        self.runner.start()
        self.admission.start()
        self.heartbeat.start()
        # Start-up objects (modules, settings, the state) live as long as the process:
        # out of the GC's full passes, which otherwise stall the calls' loop (bench/calls.py)
        gc.freeze()

    def stop(self) -> None:
        self.heartbeat.stop()
        self.admission.stop()
        self.alerts.stop()
        watch = self._watch()
        self.runner.stop()  # a distributed agent leaves the group here
        if self.sip is not None and watch is not None:
            hand_over(self.sip, watch, self.handover_wait)
        if self.sip is not None:
            if self.b2bua is not None:
                try:  # calls up get a BYE on both legs
                    self.sip.run(self.b2bua.close())
                except Exception as error:
                    log.warning("calls: stopping the B2BUA: %s", error)
            self.sip.stop()  # unREGISTERs what it still holds
        else:
            self.reporter.stop_flushing()
        self.calls.stop()  # after the calls ended: their records are written too
        if self.takeover is not None:
            self.heartbeat.leave()

    def _watch(self) -> TakenOver | None:
        if self.takeover is None or self.sip is None or self.handover_wait <= 0:
            return None
        try:
            return self.takeover()
        except Exception as error:  # the broker is away: unregister everything, as before
            log.warning("hand-over: cannot watch the status topic (%s); the trunks held "
                        "here will be unregistered", error)
            return None

    def serve_admission(self, process: Process, tenant: str) -> None:
        process.serve(AGENT_SERVICE, partial(agent_pb2_grpc.add_AgentServiceServicer_to_server,
                                             AgentServicer(self.admission, tenant)))


def agent_parts(settings: Settings, feed: EventFeed, sink: StatusSink,
                directory: AgentDirectory, agent_id: str, metrics: Metrics,
                record: Callable[[Alert], None], write_calls: Writer, name: str = "agent",
                on_revoked: bool = False) -> AgentParts:
    sip_settings = replace(settings.sip, agent_id=agent_id) if settings.sip else None
    sip = SipAgent(sip_settings, sink) if sip_settings is not None else None
    reporter = sip.reporter if sip is not None else Reporter(sink, agent_id)
    state = AgentState(sip.update if sip is not None else None,
                       sip.release if sip is not None else None)
    if on_revoked:  # a rebalance: keep what is assigned again, release the rest
        feed.on_revoked = state.revoked  # type: ignore[attr-defined]
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
    records = QueuedCallSink(write_calls)
    metrics.watch_call_records(sink=records)
    b2bua = None
    if sip is not None and settings.calls is not None:
        b2bua = B2BUA(replace(settings.calls, agent_id=agent_id), admission, state, records,
                      sip)
    return AgentParts(feed, AgentRunner(feed, state, name=name), sip, reporter, admission,
                      alerts, Heartbeat(directory, agent_id, state, settings.heartbeat_every),
                      records, b2bua)


def embedded_agent(settings: Settings, bus: CommandBus, status: StatusView,
                   calls: CallStore, metrics: Metrics) -> AgentParts:
    """`serve`'s agent: it follows the store, records fraud alerts through the bus and
    writes call records straight into the control plane's store."""
    feed = StoreEventFeed(bus.app, "agent", MemoryPositions())
    agent_id = settings.sip.agent_id if settings.sip else "embedded"
    meta = CommandMeta(actor=f"agent:{agent_id}", reason="fraud alert")

    def record(alert: Alert) -> None:
        bus.run(partial(commands.record_fraud_alert, tenant=alert.tenant, kind=alert.kind,
                        detail=alert.detail, extension=alert.extension,
                        route_id=alert.route_id, meta=meta), None).unwrap()

    parts = agent_parts(settings, feed, status, status, agent_id, metrics, record, calls.record)
    for doc in status.all():  # calls that were up when this process stopped
        if doc["agent_id"] == agent_id and (doc["active_inbound"] or doc["active_outbound"]):
            parts.admission.seed(doc["tenant"], doc["trunk_id"], doc["active_inbound"],
                                 doc["active_outbound"])
    return parts


def check_broker(kafka: Any, codec: Any) -> None:
    """Refuses to start against a broker without the topics `kafka init` makes (or made
    otherwise), or with records the wire key cannot open: loudly, not by failing later."""
    from infra.messaging.topics import TopicError, check_broker

    try:
        check_broker(kafka, codec)
    except TopicError as error:
        raise SettingsError(str(error)) from None


def wire_codec(settings: Settings) -> Any:
    from infra.messaging.codec import AvroCodec

    kafka = settings.kafka
    assert kafka is not None
    if not kafka.wire_key:
        raise SettingsError(
            "the distributed mode needs TRUNKPLANE_WIRE_KEY (the same on control planes and "
            "agents; it seals passwords on the broker), for example "
            f"w1:{WireCipher.new_key()}")
    try:
        return AvroCodec(WireCipher(kafka.wire_key))
    except ValueError as error:
        raise SettingsError(str(error)) from None


def start_agent(settings: Settings) -> Process:
    """`trunkplane agent`'s process, started: consuming, registering, serving admission."""
    from infra.messaging.calls import KafkaCallSink
    from infra.messaging.feeds import (
        KafkaEventFeed,
        KafkaStatusSink,
        TakeoverWatch,
        seed_from_status,
    )
    from infra.messaging.state import StateWriter, restore

    kafka = settings.kafka
    if kafka is None:
        raise SettingsError("trunkplane agent needs TRUNKPLANE_KAFKA_BOOTSTRAP (host:port of "
                            "the Kafka brokers)")
    agent_id = kafka.agent_id or socket.gethostname()
    codec = wire_codec(settings)
    check_broker(kafka, codec)
    sink = KafkaStatusSink(kafka, codec)
    call_sink = KafkaCallSink(kafka, codec)
    session_ms = int(kafka.session_timeout * 1000)
    feed = KafkaEventFeed(kafka, kafka.agent_group, codec, from_start=True,
                          client_id=f"trunkplane-agent-{agent_id}",
                          session_timeout_ms=session_ms,
                          heartbeat_interval_ms=max(100, session_ms // 6))
    metrics = Metrics()
    parts = agent_parts(settings, feed, sink, sink, agent_id, metrics,
                        alert_recorder(settings.control), call_sink.publish,
                        name=f"agent-{agent_id}", on_revoked=True)

    def on_assigned(partitions: list[int], new: list[int]) -> None:
        parts.runner.state.assigned(partitions)
        if not new:
            return
        # the gate closed before the restore lapses after 120 s: a restore that took most
        # of that (a slow broker) must not leave the seed's scan, up to 30 s, ungated
        parts.admission.taking_over(new, at_most=SEED_TIMEOUT + 30)
        try:  # after the restore, which registers their trunks meanwhile
            seeded = seed_from_status(kafka, codec, new, parts.admission.seed,
                                      settings.lease_ttl, timeout=SEED_TIMEOUT)
        except Exception as error:  # the broker is away: admitting them beats refusing
            log.warning("agent %s: the calls in progress of its new tenants cannot be read "
                        "(%s: %s); for one lease TTL their calls may pass the limits",
                        agent_id, type(error).__name__, error)
            seeded = 0
        finally:
            parts.admission.taken_over(new)
        if seeded:
            log.info("agent %s: calls in progress on %d trunks of its new tenants hold their "
                     "channels", agent_id, seeded)

    feed.on_assigned = on_assigned
    # expelled from the group (paused past the session): the successor may have changed or
    # deleted what these partitions carry, so their tenants are dropped, and restored from
    # the state topic if the partitions come back
    feed.on_lost = parts.runner.state.forget_partitions
    state = parts.runner.state
    state.track = True  # what changed goes to the state topic, for the next owners
    # a new partition's tenants come from the state topic, then the events after it
    fences: dict[int, int] = {}  # the owner epochs the state topic shows, by partition

    def start_at(new: list[int]) -> dict[int, int]:
        # their tenants admit no call until on_assigned has seeded the calls in progress
        parts.admission.taking_over(new)
        return restore(kafka, codec, state, new, fences=fences)

    feed.start_at = start_at
    runner = parts.runner
    writer = StateWriter(kafka, codec, state, kafka.state_every,
                         # a full batch, or more than two batches waiting: a short
                         # poll (often, on a loaded machine) said caught up when it was not
                         behind=lambda: runner.behind or feed.lag > 2 * runner.batch,
                         generation=lambda: feed.generation, fences=fences)
    parts.runner.after = writer
    metrics.watch_snapshots(writer)
    parts.takeover = lambda: TakeoverWatch(kafka, codec, agent_id)
    parts.handover_wait = kafka.handover_wait
    process = Process(settings, metrics)
    process.add(Closing(sink.close))
    process.add(Closing(call_sink.close))
    process.add(Closing(writer.close))
    process.add(parts)
    parts.serve_admission(process, settings.tenant)
    parts.heartbeat.address = advertised(settings, process.listen())
    process.start()
    log.info("agent %s: consuming %s at %s in group %s", agent_id, kafka.events_topic,
             kafka.bootstrap, kafka.agent_group)
    return process


def run_agent(settings: Settings) -> None:
    """`trunkplane agent` until SIGINT or SIGTERM."""
    settings.private_data_dir()
    admin_token = ensure_admin_token(settings.data_dir)
    process = start_agent(settings)
    if admin_token is not None:
        log.info("first start: an admin token is in %s", admin_token)
    process.log_listening("AgentService")
    wait_for_signal()
    log.info("stopping: its partitions go to the other agents")
    process.stop()
