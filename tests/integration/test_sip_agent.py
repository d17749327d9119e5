"""The SIP engine against a real Kamailio (Debian's package) on loopback ports: register,
refresh, wrong password, unknown user, unregister, account trunks, peer failover, and a
registrar that goes away and comes back."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.status import StatusObservation, TrunkState
from sipagent.engine import SipAgent
from sipagent.settings import SipSettings
from tests.kamailio import Kamailio
from tests.status_recorder import Recorder

PASSWORD = "Long-Enough-Password-123"


def fast(**overrides: Any) -> SipSettings:
    values: dict[str, Any] = {
        "agent_id": "test-agent", "listen_port": 0, "t1": 0.1, "startup_spread": 0.0,
        "backoff_base": 0.3, "backoff_max": 2.0, "options_interval": 0.5,
        "options_timeout": 0.5, "destinations": ("127.0.0.0/8",)}
    return SipSettings(**{**values, **overrides})


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Kamailio]:
    with Kamailio(tmp_path / "kamailio", {"1001": PASSWORD, "2002": PASSWORD},
                  min_expires=1, max_expires=4) as running:
        yield running


@pytest.fixture
def kamailio_hour(tmp_path: Path) -> Iterator[Kamailio]:
    """Grants the usual hour: a test that counts REGISTERs sees no refresh while it runs
    (the 4 s grant above refreshes after 2 s, which a loaded machine's CLI calls outlast)."""
    with Kamailio(tmp_path / "kamailio", {"1001": PASSWORD, "2002": PASSWORD}) as running:
        yield running


@pytest.fixture
def agent(kamailio: Kamailio) -> Iterator[tuple[SipAgent, Recorder]]:
    recorder = Recorder()
    engine = SipAgent(fast(tls_ca=str(kamailio.cert)), recorder)
    engine.start()
    yield engine, recorder
    engine.stop()


def trunk(port: int, transport: str = "udp", **fields: Any) -> dict[str, Any]:
    return {"type": "register", "host": f"127.0.0.1:{port}", "transport": transport,
            "username": "1001", "password": PASSWORD, "enabled": True, **fields}


def registered(o: StatusObservation) -> bool:
    return o.state == TrunkState.REGISTERED


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_register_refresh_and_unregister_on_delete(
        transport: str, kamailio: Kamailio, agent: tuple[SipAgent, Recorder]) -> None:
    engine, recorder = agent
    port = {"udp": kamailio.udp, "tcp": kamailio.tcp, "tls": kamailio.tls}[transport]
    engine.update("acme", "t1", trunk(port, transport))
    first = recorder.wait("t1", registered)
    assert (first.sip_code, first.reason, first.registrations_up) == (200, "OK", 1)
    contact = first.contacts[0].uri
    assert kamailio.contacts("1001") == [contact]
    assert (f";transport={transport}" in contact) == (transport != "udp")
    # Kamailio grants 4 s (max_expires): the engine refreshes halfway, before expiry
    expiry = first.contacts[0].expires_at
    assert expiry is not None
    recorder.wait("t1", lambda o: registered(o) and o.contacts[0].expires_at is not None
                  and o.contacts[0].expires_at > expiry, timeout=10)
    time.sleep(4.5)  # longer than the grant: still registered, never lapsed
    assert kamailio.contacts("1001") == [contact]
    engine.update("acme", "t1", None)
    recorder.wait("t1", lambda o: o.state == TrunkState.UNREGISTERED)
    assert kamailio.contacts("1001") == []


def test_a_wrong_password_is_auth_failed_and_retried_only_on_the_back_off(
        kamailio: Kamailio, agent: tuple[SipAgent, Recorder]) -> None:
    engine, recorder = agent
    engine.update("acme", "bad", trunk(kamailio.udp, password="Wrong-Password-000000"))
    failed = recorder.wait("bad", lambda o: o.state == TrunkState.AUTH_FAILED)
    assert (failed.sip_code, failed.reason) == (401, "Unauthorized")
    time.sleep(3)
    attempts = engine.counters.registration_failures["auth_failed"]
    # back-off 0.3 s * 2^n, capped at 2 s, waited in [W/2, W]: at most 6 in 3 s
    assert 2 <= attempts <= 6
    assert kamailio.contacts("1001") == []


def test_an_unknown_user_is_forbidden(kamailio: Kamailio,
                                      agent: tuple[SipAgent, Recorder]) -> None:
    engine, recorder = agent
    engine.update("acme", "who", trunk(kamailio.udp, username="9999"))
    forbidden = recorder.wait("who", lambda o: o.state == TrunkState.FORBIDDEN)
    assert (forbidden.sip_code, forbidden.reason) == (403, "Unknown User")
    # the long back-off waits 1 to 2 s here, the ordinary one at most 0.6 s after a first
    # failure; the observation can reach us 0.1 s after the attempt, so look 0.8 s later
    time.sleep(0.8)
    assert engine.counters.registration_failures["forbidden"] == 1


def test_an_account_trunk_holds_several_registrations(
        kamailio: Kamailio, agent: tuple[SipAgent, Recorder]) -> None:
    engine, recorder = agent
    engine.update("acme", "acct", trunk(kamailio.tcp, "tcp", type="account",
                                        username="2002", auth_id="2002", max_registrations=3))
    up = recorder.wait("acct", lambda o: o.registrations_up == 3)
    assert up.state == TrunkState.REGISTERED and up.registrations_wanted == 3
    assert len(set(kamailio.contacts("2002"))) == 3


def test_changed_credentials_re_register_and_disabling_unregisters(
        kamailio: Kamailio, agent: tuple[SipAgent, Recorder]) -> None:
    engine, recorder = agent
    engine.update("acme", "t1", trunk(kamailio.udp, password="Wrong-Password-000000"))
    recorder.wait("t1", lambda o: o.state == TrunkState.AUTH_FAILED)
    engine.update("acme", "t1", trunk(kamailio.udp))  # the operator fixes the password
    recorder.wait("t1", registered)
    assert len(kamailio.contacts("1001")) == 1
    engine.update("acme", "t1", trunk(kamailio.udp, enabled=False))
    recorder.wait("t1", lambda o: o.state == TrunkState.DISABLED)
    assert kamailio.contacts("1001") == []


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_the_registrar_goes_away_and_comes_back(
        transport: str, kamailio: Kamailio, agent: tuple[SipAgent, Recorder]) -> None:
    """Over TCP the connection dies with Kamailio: the next attempt opens a new one."""
    engine, recorder = agent
    port = kamailio.udp if transport == "udp" else kamailio.tcp
    engine.update("acme", "t1", trunk(port, transport))
    recorder.wait("t1", registered)
    kamailio.stop()
    down = recorder.wait("t1", lambda o: o.state == TrunkState.UNREACHABLE, timeout=15)
    # qualify (OPTIONS) or the next refresh finds it gone, whichever comes first
    assert "127.0.0.1" in down.reason
    kamailio.start()  # the same ports, no registrations
    recorder.wait("t1", registered, timeout=15)
    assert len(kamailio.contacts("1001")) == 1


def test_a_clean_shutdown_unregisters_everything(kamailio: Kamailio) -> None:
    recorder = Recorder()
    engine = SipAgent(fast(), recorder)
    engine.start()
    engine.update("acme", "a", trunk(kamailio.udp))
    engine.update("acme", "b", trunk(kamailio.tcp, "tcp", username="2002"))
    recorder.wait("a", registered)
    recorder.wait("b", registered)
    assert kamailio.location_counts() == (2, 2)
    engine.stop()
    assert kamailio.location_counts() == (0, 0)


def test_stopping_closes_the_event_loop() -> None:
    """No loop left open (a ResourceWarning when collected), whether the engine ran or
    never started; a trunk change after the stop is ignored, not an error."""
    engine = SipAgent(fast(), Recorder())
    engine.start()
    engine.stop()
    assert engine._loop.is_closed()
    engine.update("acme", "late", None)
    never = SipAgent(fast(), Recorder())
    never.stop()
    assert never._loop.is_closed()


def test_peer_failover_and_recovery(tmp_path: Path) -> None:
    first = Kamailio(tmp_path / "k1", {}, address="127.0.0.1")
    second = Kamailio(tmp_path / "k2", {}, address="127.0.0.2")
    recorder = Recorder()
    engine = SipAgent(fast(), recorder)
    engine.start()
    one, two = f"127.0.0.1:{first.udp}", f"127.0.0.2:{second.udp}"
    try:
        engine.update("acme", "peer", {"type": "peer", "transport": "udp", "enabled": True,
                                       "peer_addresses": [one, two]})
        both = recorder.wait("peer", lambda o: all(p.up for p in o.peers) and len(o.peers) == 2)
        assert both.state == TrunkState.OK and both.reason == f"using {one}"
        assert all(p.rtt_ms is not None and p.rtt_ms > 0 for p in both.peers)
        first.stop()
        failed_over = recorder.wait("peer", lambda o: not o.peers[0].up)
        assert failed_over.state == TrunkState.OK and failed_over.reason == f"using {two}"
        second.stop()
        recorder.wait("peer", lambda o: o.state == TrunkState.UNREACHABLE)
        first.start()
        back = recorder.wait("peer", lambda o: o.state == TrunkState.OK)
        assert back.reason == f"using {one}"
        assert engine.counters.options_missed >= 4  # two misses per address went down
    finally:
        engine.stop()
        first.stop()
        second.stop()


def test_a_trunk_created_with_the_cli_is_registered_within_a_second(
        kamailio_hour: Kamailio, tmp_path: Path) -> None:
    """The whole path: CLI -> gRPC -> event store -> embedded agent -> REGISTER ->
    Kamailio's location table, and the status back in `trunk status`."""
    kamailio = kamailio_hour
    from tests.integration.test_cli import Server

    server = Server(tmp_path / "serve", TRUNKPLANE_SIP_STARTUP_SPREAD="0",
                    TRUNKPLANE_SIP_TLS_CA=str(kamailio.cert))
    (tmp_path / "serve").mkdir()
    server.start()
    try:
        created = server.cli("trunk", "create", "kam", "--type", "register", "--host",
                             f"127.0.0.1:{kamailio.tls}", "--transport", "tls",
                             "--username", "1001", "--codecs", "PCMU", "--password-stdin",
                             stdin=f"{PASSWORD}\n")
        assert created.returncode == 0, created.stderr
        started = time.monotonic()
        while not kamailio.contacts("1001"):
            assert time.monotonic() - started < 1.0, server.log.read_text()[-2000:]
            time.sleep(0.02)
        deadline = time.monotonic() + 10
        while "registered" not in (shown := server.cli("trunk", "status").stdout):
            assert time.monotonic() < deadline, shown
            time.sleep(0.1)
        row = next(line for line in shown.splitlines() if line.startswith("kam"))
        assert re.search(r"registered\s+200\s+OK\s", row) and "1/1" in row, row
        metrics = urllib.request.urlopen(
            f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
        assert 'trunkplane_sip_trunks{state="registered"} 1.0' in metrics
        assert "trunkplane_sip_registers_total 1.0" in metrics

        udp = server.cli("trunk", "create", "kamudp", "--type", "register", "--host",
                         f"127.0.0.1:{kamailio.udp}", "--username", "2002", "--codecs", "PCMU",
                         "--password-stdin", stdin=f"{PASSWORD}\n")
        assert udp.returncode == 0, udp.stderr
        while "2002" not in kamailio.ul_dump():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # the observation reaches the view
        doctor = server.cli("doctor")
        assert "OK   trunk kam: agent test" not in doctor.stdout  # the agent is this server's
        assert re.search(r"OK   trunk kam: agent \S+ reports registered \(200 OK\)",
                         doctor.stdout), doctor.stdout
        assert re.search(rf"OK   trunk kamudp: 127.0.0.1:{kamailio.udp} answers OPTIONS over "
                         r"UDP: 200 OK in \d+ ms", doctor.stdout), doctor.stdout
        assert f"127.0.0.1:{kamailio.tls} accepts TCP connections" in doctor.stdout
        deleted = server.cli("trunk", "delete", "kam")
        assert deleted.returncode == 0, deleted.stderr
        deadline = time.monotonic() + 10
        while kamailio.contacts("1001"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        assert server.stop() == 0
    assert PASSWORD not in server.log.read_text()
