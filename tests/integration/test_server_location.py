"""RFC 3263 server location against a real DNS server (unbound, tests/dns_server.py) and
two Kamailio instances: the zone's SRV records point at both. Priority order, the weight
spread over many trunks, failover when the first dies (registrations and a call), a
changed record and TTL picked up, and the destination policy applied to every address."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.calls import PbxAccess
from domain.status import TrunkState
from domain.trunk_settings import validate_trunk
from infra.ops.doctor import _agent_view, check_trunk
from sipagent.engine import SipAgent
from tests.baresip import Baresip
from tests.calls_rig import Rig, wait_for
from tests.dns_server import DnsServer
from tests.integration.test_sip_agent import PASSWORD, fast, registered
from tests.kamailio import Kamailio
from tests.status_recorder import Recorder

ZONE = "example.test"
SRV = f"_sip._udp.{ZONE}."
USERS = {f"{1000 + i}": PASSWORD for i in range(1, 31)}


@pytest.fixture
def dns(tmp_path: Path) -> Iterator[DnsServer]:
    with DnsServer(tmp_path / "dns", ZONE) as server:
        yield server


@pytest.fixture
def first(tmp_path: Path) -> Iterator[Kamailio]:
    with Kamailio(tmp_path / "first", USERS, domain=ZONE, min_expires=1,
                  max_expires=4) as running:
        yield running


@pytest.fixture
def second(tmp_path: Path) -> Iterator[Kamailio]:
    with Kamailio(tmp_path / "second", USERS, domain=ZONE, min_expires=1,
                  max_expires=4) as running:
        yield running


def serve(dns: DnsServer, *targets: tuple[int, int, Kamailio, str], ttl: int = 60) -> None:
    """SRV records (priority, weight, instance, target name) and the targets' A records."""
    dns.replace(SRV, [f"{SRV} {ttl} IN SRV {p} {w} {k.udp} {name}.{ZONE}."
                      for p, w, k, name in targets])
    for _, _, _, name in targets:
        dns.replace(f"{name}.{ZONE}.", [f"{name}.{ZONE}. {max(ttl, 60)} IN A 127.0.0.1"])


@pytest.fixture
def agent(dns: DnsServer) -> Iterator[tuple[SipAgent, Recorder]]:
    recorder = Recorder()
    engine = SipAgent(fast(resolver=dns.address, destinations=("any",)), recorder)
    engine.start()
    yield engine, recorder
    engine.stop()


def trunk(user: str = "1001", **fields: Any) -> dict[str, Any]:
    return {"type": "register", "host": ZONE, "transport": "udp", "username": user,
            "password": PASSWORD, "enabled": True, **fields}


def at(kamailio: Kamailio, name: str) -> str:
    return f"udp:127.0.0.1:{kamailio.udp} ({name}.{ZONE})"


def test_priority_first_then_failover_when_the_first_dies(
        dns: DnsServer, first: Kamailio, second: Kamailio,
        agent: tuple[SipAgent, Recorder]) -> None:
    serve(dns, (10, 50, first, "sip1"), (20, 50, second, "sip2"), ttl=3600)
    engine, recorder = agent
    engine.update("acme", "t1", trunk())
    up = recorder.wait("t1", registered)
    assert up.target == at(first, "sip1")
    assert first.contacts("1001") == [up.contacts[0].uri] and second.contacts("1001") == []
    first.stop()  # the refresh (every 2 s) times out there and goes to the second
    moved = recorder.wait("t1", lambda o: registered(o) and o.target == at(second, "sip2"),
                          timeout=40)
    assert second.contacts("1001") == [moved.contacts[0].uri]
    # the SRV and A answers were cached (an hour): one question each, for every refresh
    assert engine.locator.asked[(SRV.rstrip("."), "SRV")] == 1
    assert engine.locator.asked[(f"sip2.{ZONE}", "A")] == 1


def test_weights_spread_trunks_over_one_priority(
        dns: DnsServer, first: Kamailio, second: Kamailio,
        agent: tuple[SipAgent, Recorder]) -> None:
    serve(dns, (10, 50, first, "sip1"), (10, 50, second, "sip2"))
    engine, recorder = agent
    for user in USERS:
        engine.update("acme", f"t{user}", trunk(user))
    seen = [recorder.wait(f"t{user}", registered) for user in USERS]
    where = {at(first, "sip1"): 0, at(second, "sip2"): 0}
    for observation in seen:
        where[observation.target] += 1
    # 30 trunks, even weights: all on one server would happen once in 500 million runs
    assert min(where.values()) > 0, where
    assert sum(len(first.contacts(u)) + len(second.contacts(u)) for u in USERS) == 30


def test_a_changed_record_and_its_new_ttl_are_picked_up(
        dns: DnsServer, first: Kamailio, second: Kamailio,
        agent: tuple[SipAgent, Recorder]) -> None:
    serve(dns, (10, 50, first, "sip1"), ttl=1)
    engine, recorder = agent
    engine.update("acme", "t1", trunk())
    assert recorder.wait("t1", registered).target == at(first, "sip1")
    serve(dns, (10, 50, second, "sip2"), ttl=3600)  # the provider moves, for an hour
    recorder.wait("t1", lambda o: registered(o) and o.target == at(second, "sip2"),
                  timeout=20)
    asked = engine.locator.asked[(SRV.rstrip("."), "SRV")]
    serve(dns, (10, 50, first, "sip1"), ttl=1)  # not seen before the hour is over
    refreshed = recorder.wait("t1", registered).contacts[0].expires_at
    recorder.wait("t1", lambda o: registered(o) and o.contacts[0].expires_at != refreshed,
                  timeout=10)  # a refresh later: still there, the SRV not asked again
    latest = recorder.latest("t1")
    assert latest is not None and latest.target == at(second, "sip2")
    assert engine.locator.asked[(SRV.rstrip("."), "SRV")] == asked


def test_without_srv_the_name_s_address_and_with_a_port_no_srv_at_all(
        dns: DnsServer, first: Kamailio, agent: tuple[SipAgent, Recorder]) -> None:
    dns.add(f"direct.{ZONE}. 60 IN A 127.0.0.1")
    engine, recorder = agent
    engine.update("acme", "t1", trunk(host=f"direct.{ZONE}:{first.udp}"))
    assert recorder.wait("t1", registered).target == f"udp:127.0.0.1:{first.udp} (direct.{ZONE})"
    assert (f"direct.{ZONE}", "SRV") not in engine.locator.asked  # a port: A only
    assert (f"_sip._udp.direct.{ZONE}", "SRV") not in engine.locator.asked
    engine.update("acme", "t2", trunk("1002", host=f"nothing.{ZONE}"))
    failed = recorder.wait("t2", lambda o: o.state == TrunkState.UNREACHABLE)
    assert "no SRV record" in failed.reason and "no address" in failed.reason


def test_every_address_is_checked_against_the_destinations(dns: DnsServer,
                                                           first: Kamailio) -> None:
    serve(dns, (10, 50, first, "sip1"))
    recorder = Recorder()
    engine = SipAgent(fast(resolver=dns.address, destinations=()), recorder)  # public only
    engine.start()
    try:
        engine.update("acme", "t1", trunk())
        refused = recorder.wait("t1", lambda o: o.state == TrunkState.UNREACHABLE)
        assert "outside TRUNKPLANE_SIP_DESTINATIONS" in refused.reason
        assert first.contacts("1001") == []
    finally:
        engine.stop()


def test_a_resolver_that_does_not_answer_is_named(dns: DnsServer) -> None:
    dns.stop()
    recorder = Recorder()
    engine = SipAgent(fast(resolver=dns.address, destinations=("any",)), recorder)
    engine.start()
    try:
        engine.update("acme", "t1", trunk())
        down = recorder.wait("t1", lambda o: o.state == TrunkState.UNREACHABLE)
        assert f"resolver {dns.address}" in down.reason, down.reason
    finally:
        engine.stop()


def test_a_call_fails_over_to_the_next_srv_target(
        dns: DnsServer, tmp_path: Path) -> None:
    users = {"1001": PASSWORD, "3003": PASSWORD}
    with Kamailio(tmp_path / "a", users, calls=True) as dead, \
            Kamailio(tmp_path / "b", users, calls=True) as alive:
        serve(dns, (10, 50, dead, "sip1"), (20, 50, alive, "sip2"))
        rig = Rig(access=PbxAccess("acme", ("127.0.0.0/8",)),
                  sip={"resolver": dns.address, "destinations": ("any",)})
        far = Baresip(tmp_path, f"<sip:3003@127.0.0.1:{alive.udp}>;auth_pass={PASSWORD};"
                      "regint=60", "far")
        pbx = Baresip(tmp_path, "<sip:201@127.0.0.1>;regint=0", "pbx")
        try:
            wait_for(lambda: bool(alive.contacts("3003")), 15, "the far end registered")
            name = rig.trunk("carrier", type="register", host=ZONE, username="1001",
                             password=PASSWORD, from_domain=f"127.0.0.1:{alive.udp}")
            wait_for(lambda: bool(dead.contacts("1001")), 15, "registered at the first")
            dead.stop()  # the INVITE goes there first (where the trunk registered)
            hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # hears, never answers
            hole.bind(("127.0.0.1", dead.udp))
            hole.setblocking(False)
            rig.route("all", [name])
            pbx.dial(f"sip:3003@127.0.0.1:{rig.pbx_address[1]}")
            far.wait_event("CALL_INCOMING")
            far.accept()
            pbx.wait_event("CALL_ESTABLISHED")
            pbx.hangup()
            wait_for(lambda: rig.channels(name) == (0, 0), 10, "the channel freed")
            record = rig.records.records[-1]
            assert record.final_code == 200 and [a.code for a in record.attempts] == [200]
            heard = hole.recv(65536)
            assert heard.startswith(b"INVITE sip:3003@example.test"), heard[:80]
            hole.close()
        finally:
            pbx.stop()
            far.stop()
            rig.close()



def test_doctor_explains_a_name_without_records_and_a_silent_resolver(
        dns: DnsServer, first: Kamailio) -> None:
    serve(dns, (10, 50, first, "sip1"))
    sip = fast(resolver=dns.address, destinations=("any",))
    settings, _ = validate_trunk({**trunk(), "name": "voco", "codecs": ["PCMU"]})
    found = [f for f in check_trunk("voco", settings, sip) if "located" in f.text]
    assert found[0].level == "ok" and at(first, "sip1") in found[0].text

    missing = {**settings, "host": f"nothing.{ZONE}"}
    [failure] = [f for f in check_trunk("voco", missing, sip) if f.level == "fail"]
    assert "no SRV record" in failure.text and "_sip._udp" in failure.fix
    assert "host:port" in failure.fix

    dns.stop()
    [silent] = [f for f in check_trunk("voco", settings, sip) if f.level == "fail"]
    assert "did not answer" in silent.text and "TRUNKPLANE_SIP_RESOLVER" in silent.fix
    reported = {"state": "unreachable", "sip_code": 0, "agent_id": "a", "since": "now",
                "reason": f"DNS: the resolver {dns.address} did not answer ({ZONE} NAPTR)"}
    [view] = _agent_view("voco", settings, reported)
    assert "TRUNKPLANE_SIP_RESOLVER" in view.fix


def test_naptr_names_the_srv_of_the_trunk_s_transport(
        dns: DnsServer, first: Kamailio, second: Kamailio,
        agent: tuple[SipAgent, Recorder]) -> None:
    serve(dns, (10, 50, second, "sip2"))  # _sip._udp: not what TCP trunks use
    dns.add(f'{ZONE}. 60 IN NAPTR 10 50 "s" "SIP+D2U" "" {SRV}',
            f'{ZONE}. 60 IN NAPTR 20 50 "s" "SIP+D2T" "" _sip._tcp.pool.{ZONE}.',
            f"_sip._tcp.pool.{ZONE}. 60 IN SRV 10 50 {first.tcp} sip1.{ZONE}.",
            f"sip1.{ZONE}. 60 IN A 127.0.0.1")
    engine, recorder = agent
    engine.update("acme", "t1", trunk(transport="tcp"))
    assert recorder.wait("t1", registered).target == (
        f"tcp:127.0.0.1:{first.tcp} (sip1.{ZONE})")
    assert (f"_sip._tcp.{ZONE}", "SRV") not in engine.locator.asked


def test_a_peer_whose_first_target_answers_503_is_watched_at_the_next(
        dns: DnsServer, second: Kamailio, agent: tuple[SipAgent, Recorder],
        tmp_path: Path) -> None:
    """RFC 3263 4.3: a 503 moves OPTIONS to the next target, as no answer does."""
    with Kamailio(tmp_path / "busy", USERS, domain=ZONE,
                  options_reply=(503, "Service Unavailable")) as busy:
        serve(dns, (10, 50, busy, "sip1"), (20, 50, second, "sip2"), ttl=3600)
        engine, recorder = agent
        engine.update("acme", "p1", {"type": "peer", "host": "", "transport": "udp",
                                     "peer_addresses": [ZONE], "enabled": True})
        ok = recorder.wait("p1", lambda o: o.state == TrunkState.OK, timeout=30)
        assert ok.target == at(second, "sip2")


def closed_udp_port() -> int:
    """A loopback UDP port nobody listens on (a datagram there draws ICMP unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_503_then_a_dead_target_shows_the_target_that_answered(
        dns: DnsServer, agent: tuple[SipAgent, Recorder], tmp_path: Path) -> None:
    """Every target failed: the status shows the 503 and names the registrar that gave
    it, not the last target tried (which never answered)."""
    with Kamailio(tmp_path / "busy", USERS, domain=ZONE,
                  register_reply=(503, "Service Unavailable")) as busy:
        dead = closed_udp_port()
        dns.replace(SRV, [f"{SRV} 3600 IN SRV 10 50 {busy.udp} sip1.{ZONE}.",
                          f"{SRV} 3600 IN SRV 20 50 {dead} sip2.{ZONE}."])
        for name in ("sip1", "sip2"):
            dns.replace(f"{name}.{ZONE}.", [f"{name}.{ZONE}. 3600 IN A 127.0.0.1"])
        engine, recorder = agent
        engine.update("acme", "t1", trunk())
        failed = recorder.wait("t1", lambda o: o.state == TrunkState.FAILED, timeout=30)
        assert (failed.sip_code, failed.target) == (503, at(busy, "sip1")), failed


def test_a_silent_first_target_is_left_after_failover_after_not_timer_f(
        dns: DnsServer, tmp_path: Path) -> None:
    """The first SRV target hears and never answers (UDP). With T1 at its usual 0.5 s,
    Timer F would hold each REGISTER there 32 s, and the provider timeout each INVITE
    30 s: the trunk's failover_after (2 s) moves both to the second target."""
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))
    hole.setblocking(False)
    users = {"1001": PASSWORD, "3003": PASSWORD}
    with Kamailio(tmp_path / "alive", users, calls=True) as alive:
        dns.replace(SRV, [f"{SRV} 3600 IN SRV 10 50 {hole.getsockname()[1]} sip1.{ZONE}.",
                          f"{SRV} 3600 IN SRV 20 50 {alive.udp} sip2.{ZONE}."])
        for name in ("sip1", "sip2"):
            dns.replace(f"{name}.{ZONE}.", [f"{name}.{ZONE}. 3600 IN A 127.0.0.1"])
        rig = Rig(access=PbxAccess("acme", ("127.0.0.0/8",)),
                  sip={"resolver": dns.address, "destinations": ("any",), "t1": 0.5,
                       "options_timeout": 3.0, "options_interval": 30.0},
                  t1=0.5, provider_timeout=30.0, ring_timeout=30.0)
        far = Baresip(tmp_path, f"<sip:3003@127.0.0.1:{alive.udp}>;auth_pass={PASSWORD};"
                      "regint=60", "far")
        pbx = Baresip(tmp_path, "<sip:201@127.0.0.1>;regint=0", "pbx")
        try:
            wait_for(lambda: bool(alive.contacts("3003")), 15, "the far end registered")
            started = time.monotonic()
            name = rig.trunk("carrier", type="register", host=ZONE, username="1001",
                             password=PASSWORD, from_domain=f"127.0.0.1:{alive.udp}",
                             timers={"failover_after": 2})
            wait_for(lambda: bool(alive.contacts("1001")), 10, "registered at the second")
            registered_in = time.monotonic() - started
            assert 2.0 <= registered_in < 7.0, registered_in  # Timer F: 32 s
            assert hole.recv(65536).startswith(b"REGISTER ")
            wait_for(lambda: rig.engine.live_state(name) == TrunkState.REGISTERED, 10,
                     "the trunk up")
            rig.route("all", [name])
            started = time.monotonic()
            pbx.dial(f"sip:3003@127.0.0.1:{rig.pbx_address[1]}")
            far.wait_event("CALL_INCOMING", timeout=15)
            rang_in = time.monotonic() - started
            assert 2.0 <= rang_in < 7.0, rang_in  # the provider timeout: 30 s
            far.accept()
            pbx.wait_event("CALL_ESTABLISHED")
            pbx.hangup()
            wait_for(lambda: rig.channels(name) == (0, 0), 10, "the channel freed")
            record = rig.records.records[-1]
            assert record.final_code == 200 and [a.code for a in record.attempts] == [200]
            heard = b""
            with contextlib.suppress(BlockingIOError):
                while not heard.startswith(b"INVITE"):
                    heard = hole.recv(65536)
            assert heard.startswith(b"INVITE sip:3003@example.test"), heard[:80]
        finally:
            hole.close()
            pbx.stop()
            far.stop()
            rig.close()


def test_every_target_silent_is_named_and_one_target_keeps_timer_f(
        dns: DnsServer, agent: tuple[SipAgent, Recorder]) -> None:
    """Two silent SRV targets: the first is left after failover_after, the last gets
    Timer F (64*T1 = 6.4 s here), and the status names them all, as doctor explains. A
    single target (an IP address) gets the whole of Timer F too."""
    holes = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for hole in holes:
            hole.bind(("127.0.0.1", 0))
        ports = [hole.getsockname()[1] for hole in holes]
        dns.replace(SRV, [f"{SRV} 3600 IN SRV {10 * (i + 1)} 50 {port} sip{i + 1}.{ZONE}."
                          for i, port in enumerate(ports)])
        for name in ("sip1", "sip2"):
            dns.replace(f"{name}.{ZONE}.", [f"{name}.{ZONE}. 3600 IN A 127.0.0.1"])
        engine, recorder = agent
        engine.update("acme", "t1", trunk(timers={"failover_after": 1}))
        engine.update("acme", "t2", trunk("1002", host=f"127.0.0.1:{ports[0]}",
                                          timers={"failover_after": 1}))
        both = recorder.wait("t1", lambda o: o.state == TrunkState.UNREACHABLE, timeout=30)
        assert both.reason == (
            f"none of the 2 servers located answered (udp:127.0.0.1:{ports[0]}, "
            f"udp:127.0.0.1:{ports[1]}); the last: no answer from udp:127.0.0.1:{ports[1]} "
            "within 6.4 s"), both.reason
        one = recorder.wait("t2", lambda o: o.state == TrunkState.UNREACHABLE, timeout=30)
        assert one.reason == f"no answer from udp:127.0.0.1:{ports[0]} within 6.4 s"
        settings, _ = validate_trunk({**trunk(timers={"failover_after": 1}), "name": "voco",
                                      "codecs": ["PCMU"]})
        reported = {"state": "unreachable", "sip_code": 0, "agent_id": "a", "since": "now",
                    "reason": both.reason}
        [view] = _agent_view("voco", settings, reported)
        assert view.level == "fail" and "--failover-after" in view.fix
    finally:
        for hole in holes:
            hole.close()
