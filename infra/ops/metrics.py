"""Prometheus metrics of a control-plane process, served over HTTP. Counters and histograms
are updated as calls happen; everything that is state (the log head, each view's lag, the
trunk states the agents report) is read when Prometheus scrapes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from domain.application import TrunkplaneApp
from projections.config_view import ConfigView
from projections.runner import describe
from projections.status import StatusView
from projections.views import ViewStore

Doc = dict[str, Any]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter("trunkplane_calls", "gRPC calls by method and status code",
                             ["method", "code"], registry=self.registry)
        self.latency = Histogram("trunkplane_call_seconds", "gRPC call latency by method",
                                 ["method"], registry=self.registry,
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25,
                                          .5, 1, 2.5, 5, 10))

        # each call's labelled children, found once (`labels` costs a lock and a lookup)
        self._counted: dict[tuple[str, str], Any] = {}
        self._timed: dict[str, Any] = {}

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        counted = self._counted.get((method, code))
        if counted is None:
            counted = self._counted[(method, code)] = self.calls.labels(method, code)
        timed = self._timed.get(method)
        if timed is None:
            timed = self._timed[method] = self.latency.labels(method)
        counted.inc()
        timed.observe(seconds)

    def watch(self, app: TrunkplaneApp, store: ViewStore, status: StatusView) -> None:
        self.registry.register(_StateCollector(app, store, status))

    def watch_relay(self, app: TrunkplaneApp, relay: Any) -> None:
        """relay: infra.messaging.relay.Relay (not imported here: the embedded mode has no
        Kafka)."""
        def gauges() -> list[GaugeMetricFamily]:
            found = [_gauge("trunkplane_relay_leader",
                            "1 when this process is the publishing relay", int(relay.leading)),
                     _gauge("trunkplane_relay_heals",
                            "Times the relay found the events topic empty of what it had "
                            "published, and republished the log from the start",
                            relay.heals),
                     _gauge("trunkplane_relay_republished_events",
                            "Events republished because the broker had lost them (a new or "
                            "emptied events topic)", relay.republished)]
            if relay.leading:  # a standby's position is stale: its lag would alert falsely
                found += [_gauge("trunkplane_relay_lag_events",
                                 "Stored events the relay has not published to the broker "
                                 "yet", app.head() - relay.position),
                          _gauge("trunkplane_relay_position",
                                 "Last log position the broker acknowledged", relay.position)]
            return found

        self.registry.register(_Gauges(gauges))

    def watch_agent(self, state: Any, feed: Any, sip: Any = None,
                    admission: Any = None) -> None:
        """state: sipagent.state.AgentState; feed: its EventFeed; sip: its SipAgent;
        admission: its sipagent.admission.Admission."""
        if sip is not None:
            self.registry.register(_SipCollector(sip))
        if admission is not None:
            self.registry.register(_AdmissionCollector(admission))
        self.registry.register(_Gauges(lambda: [
            _gauge("trunkplane_agent_tenants", "Tenants this agent owns", len(state.tenants())),
            _gauge("trunkplane_agent_trunks", "Trunks of the tenants this agent owns",
                   state.trunk_count()),
            _gauge("trunkplane_agent_position", "Last log position the agent applied",
                   state.position),
            _gauge("trunkplane_agent_partitions", "Event partitions assigned to this agent",
                   len(getattr(feed, "partitions", [0]))),
            _gauge("trunkplane_agent_dead_letters",
                   "Undecodable records this agent moved to the dead-letter topic",
                   getattr(feed, "dead_letters", 0)),
            _gauge("trunkplane_agent_events_read",
                   "Records this agent read from the events topic since it started",
                   getattr(feed, "consumed", 0)),
            _gauge("trunkplane_agent_snapshots_restored",
                   "Aggregates this agent took from the state topic since it started",
                   getattr(state, "restored", 0)),
        ]))

    def watch_snapshots(self, writer: Any) -> None:
        """writer: the agent's infra.messaging.state.StateWriter."""
        self.registry.register(_Gauges(lambda: [
            _gauge("trunkplane_agent_snapshots_written",
                   "Aggregate snapshots this agent wrote to the state topic since it started",
                   writer.written),
            _gauge("trunkplane_agent_state_write_failures",
                   "Failed writes to the state topic in a row (0: the last one went out)",
                   writer.failures),
        ]))

    def watch_call_records(self, sink: Any = None, pump: Any = None) -> None:
        """sink: the agent's sipagent.call_records.QueuedCallSink; pump: the control
        plane's infra.messaging.calls.CallPump (distributed mode)."""
        self.registry.register(_Gauges(lambda: _call_record_families(sink, pump)))

    def serve(self, listen: str) -> int:
        """Starts the /metrics endpoint; returns its port (useful when asked for port 0)."""
        host, _, port = listen.rpartition(":")
        try:
            server, _ = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1",
                                          registry=self.registry)
        except (OSError, ValueError) as error:
            raise OSError(f"cannot serve metrics on {listen} ({error}); set "
                          "TRUNKPLANE_METRICS_LISTEN to a free host:port, or to off") from None
        self._server = server
        return int(server.server_port)

    def stop(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.shutdown()
            server.server_close()


class _StateCollector(Collector):
    def __init__(self, app: TrunkplaneApp, store: ViewStore, status: StatusView) -> None:
        self.app, self.store, self.status = app, store, status
        # Metrics read whatever the view holds now: they never wait for the log's head.
        self.config = ConfigView(store, app.head, lambda position, timeout: True)

    def collect(self) -> Iterator[Any]:
        head = GaugeMetricFamily("trunkplane_log_head", "Position of the last stored event")
        head.add_metric([], self.app.head())
        yield head
        stored = CounterMetricFamily("trunkplane_events_stored",
                                     "Events this process stored since it started")
        stored.add_metric([], self.app.events_stored)
        yield stored
        lag_events = GaugeMetricFamily("trunkplane_projection_lag_events",
                                       "Events the view has not applied yet", labels=["view"])
        lag_seconds = GaugeMetricFamily("trunkplane_projection_lag_seconds",
                                        "How far behind the log the view is, in seconds",
                                        labels=["view"])
        for row in describe(self.app, self.store):
            lag_events.add_metric([row["name"]], row["lag_events"])
            lag_seconds.add_metric([row["name"]], row["lag_seconds"])
        yield lag_events
        yield lag_seconds
        states = GaugeMetricFamily("trunkplane_trunks_by_state",
                                   "Trunks by the state the agents last reported",
                                   labels=["tenant", "state"])
        for (tenant, state), count in self.status.count_by_state().items():
            states.add_metric([tenant, state], count)
        yield states
        yield from _trunk_families(self.status.all(), self.config.every_trunk())
        yield _agents_silence(self.status.agents())


TRUNK_LABELS = ["tenant", "trunk_id", "trunk"]  # the name too: panels show names, not UUIDs


def _trunk_families(observed: list[Doc], trunks: list[Doc]) -> Iterator[GaugeMetricFamily]:
    """Per trunk: its state, calls in progress against its limit, each peer address up or
    down; labelled with the trunk's name as well as its id."""
    names = {doc["id"]: str(doc["settings"].get("name", "")) for doc in trunks}
    state = GaugeMetricFamily("trunkplane_trunk_state", "1 for the state the agents last "
                              "reported for the trunk", labels=[*TRUNK_LABELS, "state"])
    calls = GaugeMetricFamily("trunkplane_active_calls", "Active calls per trunk",
                              labels=[*TRUNK_LABELS, "direction"])
    peers = GaugeMetricFamily("trunkplane_peer_up", "1 when the peer address answers OPTIONS",
                              labels=[*TRUNK_LABELS, "address"])
    for doc in observed:
        labels = [doc["tenant"], doc["trunk_id"], names.get(doc["trunk_id"], "")]
        state.add_metric([*labels, doc["state"]], 1)
        calls.add_metric([*labels, "inbound"], doc["active_inbound"])
        calls.add_metric([*labels, "outbound"], doc["active_outbound"])
        for peer in doc.get("peers", ()):
            peers.add_metric([*labels, peer["address"]], int(bool(peer["up"])))
    yield from (state, calls, peers, _limits(trunks))


def _limits(trunks: list[Doc]) -> GaugeMetricFamily:
    limit = GaugeMetricFamily("trunkplane_trunk_call_limit", "A trunk's max_concurrent_calls "
                              "(trunks without a limit have no series)", labels=TRUNK_LABELS)
    for doc in trunks:
        most = (doc["settings"].get("call_limits") or {}).get("max_concurrent_calls")
        if most:
            limit.add_metric([doc["tenant"], doc["id"], str(doc["settings"]["name"])], most)
    return limit


def _agents_silence(agents: list[Doc]) -> GaugeMetricFamily:
    silent = GaugeMetricFamily("trunkplane_agent_heartbeat_age_seconds",
                               "Seconds since each agent's last heartbeat", labels=["agent_id"])
    now = datetime.now(UTC)
    for agent in agents:
        seen = datetime.fromisoformat(agent["observed_at"])
        silent.add_metric([agent["agent_id"]], max(0.0, (now - seen).total_seconds()))
    return silent


def _call_record_families(sink: Any, pump: Any) -> list[Any]:
    families: list[Any] = []
    if sink is not None:
        families += [
            _gauge("trunkplane_call_records_pending",
                   "Call records the agent holds, not yet written (store or calls topic)",
                   sink.pending),
            _counter("trunkplane_call_records_written", "Call records the agent wrote",
                     sink.written),
            _counter("trunkplane_call_records_dropped",
                     "Call records lost because the queue was full (the store or broker "
                     "was away too long)", sink.dropped)]
    if pump is not None:
        families.append(_counter("trunkplane_call_records_pumped",
                                 "Call records this control plane copied from the calls "
                                 "topic into its store", pump.stored))
    return families


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help_text)
    family.add_metric([], value)
    return family


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text)
    family.add_metric([], value)
    return family


class _Gauges(Collector):
    def __init__(self, read: Callable[[], list[Any]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Any]:
        yield from self.read()


class _SipCollector(Collector):
    """Registrations and keepalives of the agent's SIP engine."""

    def __init__(self, sip: Any) -> None:
        self.sip = sip

    def collect(self) -> Iterator[Any]:
        snapshot = self.sip.snapshot()
        counters = snapshot["counters"]
        states = GaugeMetricFamily("trunkplane_sip_trunks", "Trunks on the wire by state",
                                   labels=["state"])
        for state, count in snapshot["states"].items():
            states.add_metric([state], count)
        yield states
        sent = CounterMetricFamily("trunkplane_sip_registers", "REGISTER attempts answered")
        sent.add_metric([], counters.registers_sent)
        yield sent
        failures = CounterMetricFamily("trunkplane_sip_registration_failures",
                                       "Failed registration attempts by outcome",
                                       labels=["outcome"])
        for outcome, count in counters.registration_failures.items():
            failures.add_metric([outcome], count)
        yield failures
        options = CounterMetricFamily("trunkplane_sip_options", "OPTIONS keepalives by result",
                                      labels=["result"])
        options.add_metric(["answered"], counters.options_answered)
        options.add_metric(["missed"], counters.options_missed)
        yield options
        rtt = GaugeMetricFamily("trunkplane_sip_options_rtt_ms",
                                "Last OPTIONS round trip per peer address",
                                labels=["trunk_id", "trunk", "address"])
        for trunk_id, name, address, ms in snapshot["rtts"]:
            rtt.add_metric([trunk_id, name, address], ms)
        yield rtt


class _AdmissionCollector(Collector):
    def __init__(self, admission: Any) -> None:
        self.admission = admission

    def collect(self) -> Iterator[Any]:
        decisions = CounterMetricFamily("trunkplane_admission_decisions",
                                        "Channel requests by outcome (granted, failed_over, or "
                                        "the refusal's status code)", labels=["outcome"])
        for outcome, count in sorted(self.admission.decision_counts().items()):
            decisions.add_metric([outcome], count)
        yield decisions
        yield _gauge("trunkplane_admission_leases", "Channel leases held now",
                     self.admission.leases())
