"""The trunk status view, fed through the in-process status sink as an agent feeds it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from domain.status import (
    SILENT_AFTER,
    AgentHeartbeat,
    ContactStatus,
    PeerStatus,
    StatusObservation,
    TrunkState,
)
from infra.config.settings import KafkaSettings, Settings
from infra.grpc_api.convert import stale
from projections.db import SqliteDatabase
from projections.status import StatusView
from tests.conftest import Api
from tests.integration.helpers import create_trunk
from trunkplane.v1 import trunk_pb2

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def observation(trunk_id: str, sequence: int, state: TrunkState, agent: str = "agent-1",
                at: datetime = T0, **extra: object) -> StatusObservation:
    return StatusObservation(tenant="default", trunk_id=trunk_id, agent_id=agent,
                             sequence=sequence, observed_at=at, state=state, since=at,
                             **extra)  # type: ignore[arg-type]


def test_status_shows_the_newest_observation_and_ignores_redelivery(api: Api) -> None:
    trunk = create_trunk(api, "voco", call_limits=trunk_pb2.CallLimits(
        max_concurrent_calls=10)).trunk
    unknown = api.trunks.GetTrunkStatus(trunk_pb2.GetTrunkRequest(trunk="voco"))
    assert (unknown.state, unknown.call_limits.max_concurrent_calls) == ("unknown", 10)
    assert (unknown.registrations_up, unknown.registrations_wanted) == (0, 1)
    registered = observation(
        trunk.id, 2, TrunkState.REGISTERED, sip_code=200, reason="OK", registrations_up=1,
        registrations_wanted=1, active_outbound=3, target="udp:192.0.2.7:5060 (sip2.voco.net)",
        contacts=(ContactStatus("sip:1001@192.0.2.50:5060", T0 + timedelta(seconds=3600)),))
    failed_earlier = observation(trunk.id, 1, TrunkState.FAILED, sip_code=403,
                                 reason="Forbidden")
    api.plane.status_sink.publish([registered])
    api.plane.status_sink.publish([failed_earlier, registered])  # late and repeated
    status = api.trunks.GetTrunkStatus(trunk_pb2.GetTrunkRequest(trunk="voco"))
    assert (status.state, status.sip_code, status.reason) == ("registered", 200, "OK")
    assert (status.registrations_up, status.active_outbound) == (1, 3)
    assert status.target == "udp:192.0.2.7:5060 (sip2.voco.net)"  # where RFC 3263 led
    assert status.contacts[0].uri == "sip:1001@192.0.2.50:5060"
    assert status.contacts[0].expires_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(hours=1)

    taken_over = observation(trunk.id, 1, TrunkState.FAILED, agent="agent-2",
                             at=T0 + timedelta(seconds=5), sip_code=403, reason="Forbidden")
    api.plane.status_sink.publish([taken_over])
    status = api.trunks.GetTrunkStatus(trunk_pb2.GetTrunkRequest(trunk="voco"))
    assert (status.state, status.reason, status.agent_id) == ("failed", "Forbidden", "agent-2")


def test_statuses_list_every_trunk_with_peer_health(api: Api) -> None:
    peer = create_trunk(api, "carrier", type="peer", username="", password="",
                        peer_addresses=["192.0.2.10", "192.0.2.11"]).trunk
    create_trunk(api, "voco", enabled=False)
    api.plane.status_sink.publish([observation(
        peer.id, 1, TrunkState.DEGRADED,
        peers=(PeerStatus("192.0.2.10", False, None, T0),
               PeerStatus("192.0.2.11", True, 12.5, T0)))])
    listed = api.trunks.ListTrunkStatuses(trunk_pb2.ListTrunksRequest())
    by_name = {s.trunk_name: s for s in listed.statuses}
    assert by_name["voco"].state == "disabled"
    carrier = by_name["carrier"]
    assert carrier.state == "degraded"
    assert [(p.address, p.up, p.rtt_ms) for p in carrier.peers] == [
        ("192.0.2.10", False, 0.0), ("192.0.2.11", True, 12.5)]


def test_watch_opens_with_the_picture_follows_changes_and_resumes(api: Api) -> None:
    voco = create_trunk(api, "voco").trunk
    carrier = create_trunk(api, "carrier", type="peer", username="", password="",
                           peer_addresses=["192.0.2.10"]).trunk
    stream = api.trunks.WatchTrunkStatus(trunk_pb2.WatchTrunkStatusRequest(), timeout=20)
    opening = [next(stream), next(stream)]
    assert {(c.status.trunk_name, c.status.state, c.current) for c in opening} == {
        ("voco", "unknown", True), ("carrier", "unknown", True)}
    api.plane.status_sink.publish([observation(voco.id, 1, TrunkState.REGISTERED)])
    change = next(stream)
    assert (change.status.trunk_name, change.status.state, change.current) == (
        "voco", "registered", False)
    stream.cancel()

    api.plane.status_sink.publish([  # while nobody watches
        observation(carrier.id, 1, TrunkState.DEGRADED),
        observation(voco.id, 1, TrunkState.FAILED),  # a redelivery: not a change
        observation(voco.id, 2, TrunkState.FAILED, sip_code=403, reason="Forbidden")])
    resumed = api.trunks.WatchTrunkStatus(trunk_pb2.WatchTrunkStatusRequest(
        since_position=change.position), timeout=20)
    missed = [next(resumed), next(resumed)]
    resumed.cancel()
    assert [(c.status.trunk_name, c.status.state) for c in missed] == [
        ("carrier", "degraded"), ("voco", "failed")]
    assert missed[0].position < missed[1].position
    only_voco = api.trunks.WatchTrunkStatus(trunk_pb2.WatchTrunkStatusRequest(
        trunks=["voco"], since_position=change.position), timeout=20)
    first = next(only_voco)
    only_voco.cancel()
    assert (first.status.trunk_name, first.status.reason) == ("voco", "Forbidden")


def test_a_silent_agents_trunks_read_unknown_until_a_live_agent_reports(tmp_path: Path
                                                                        ) -> None:
    view = StatusView(SqliteDatabase(tmp_path / "views.sqlite"), expire_after=60)
    now = datetime.now(UTC)
    beat = AgentHeartbeat("agent-1", "127.0.0.1:1", ("default",), now, now)
    view.announce(beat, received_at=now - timedelta(seconds=10))  # heard 10 s ago
    view.publish([observation("t1", 1, TrunkState.REGISTERED, at=now, sip_code=200,
                              reason="OK", registrations_up=1)])
    shown = view.of("default", ["t1"])["t1"]
    assert shown["state"] == "unknown" and shown["registrations_up"] == 0
    assert shown["reason"] == "agent agent-1 silent for 10 s (its last report: registered OK)"
    assert [a["condition"] for a in view.agents()] == ["silent"]
    assert view.sweep() == 1  # watchers learn it once
    assert view.sweep() == 0
    assert view.changes_after("default", 0)[-1][1]["state"] == "unknown"

    view.announce(AgentHeartbeat("agent-2", "127.0.0.1:2", ("default",), now, now))
    view.publish([observation("t1", 1, TrunkState.REGISTERED, agent="agent-2",
                              at=now + timedelta(seconds=1))])  # the new owner reports
    assert view.of("default", ["t1"])["t1"]["state"] == "registered"
    assert [a["condition"] for a in view.agents()] == ["silent", "alive"]

    view.announce(AgentHeartbeat("agent-2", "127.0.0.1:2", (), now + timedelta(seconds=2),
                                 now, leaving=True))
    assert [a["condition"] for a in view.agents()] == ["silent", "left"]
    later = now + timedelta(seconds=70)
    assert [a["agent_id"] for a in view.agents(later)] == []  # expired from the directory


def test_one_rule_says_when_an_agent_is_silent_and_its_reports_stale(tmp_path: Path) -> None:
    """The view's `unknown` and TrunkStatus.stale turn at the same moment: silent_after
    after the agent's last heartbeat arrived (they had a rule each, 9 s and 30 s)."""
    assert KafkaSettings("127.0.0.1:9092").silent_after == SILENT_AFTER == 9.0
    settings = Settings.from_env({"TRUNKPLANE_DATA": str(tmp_path)})
    assert settings.silent_after == SILENT_AFTER
    slow = Settings.from_env({"TRUNKPLANE_DATA": str(tmp_path),
                              "TRUNKPLANE_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
                              "TRUNKPLANE_AGENT_SESSION_TIMEOUT": "30"})
    assert slow.silent_after == 29.0
    view = StatusView(SqliteDatabase(tmp_path / "views.sqlite"))
    heard = datetime.now(UTC)
    view.announce(AgentHeartbeat("agent-1", "127.0.0.1:1", ("default",), heard,
                                 heard - timedelta(minutes=1)), received_at=heard)
    view.publish([observation("t1", 1, TrunkState.REGISTERED, at=heard)])
    report = view.changes_after("default", 0)[0][1]
    for quiet, condition in ((SILENT_AFTER, "alive"), (SILENT_AFTER + 0.001, "silent")):
        agents = {a["agent_id"]: a for a in view.agents(heard + timedelta(seconds=quiet))}
        assert agents["agent-1"]["condition"] == condition, quiet
        assert stale(report, agents) is (condition == "silent"), quiet
    left = heard + timedelta(seconds=1)
    view.announce(AgentHeartbeat("agent-1", "127.0.0.1:1", (), left,
                                 heard - timedelta(minutes=1), leaving=True), received_at=left)
    assert stale(report, {a["agent_id"]: a for a in view.agents(left)})  # left: stale too
