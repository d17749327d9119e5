"""The agent behind NAT, against real servers: Kamailio as the provider and coturn as the
STUN server, with a NAT between them and the agent (tests/natbox.py: one outside port per
client, which `rebind()` moves, as a NAT does when a binding expires). STUN from the SIP
socket, a moved mapping re-registered, rport learned from the registrar's answers, local
networks left alone, the agent's own answers to `rport`, and the From user."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.status import TrunkState
from sipagent.engine import SipAgent
from sipagent.sip.message import Response, parse
from tests.brokers import free_port
from tests.calls_rig import wait_for
from tests.coturn import Coturn
from tests.integration.test_cli import CLI, Server
from tests.integration.test_sip_agent import PASSWORD, fast
from tests.kamailio import Kamailio
from tests.natbox import NatBox
from tests.status_recorder import Recorder


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Kamailio]:
    with Kamailio(tmp_path / "kamailio", {"1001": PASSWORD}, max_expires=3600) as running:
        yield running


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    with Coturn(tmp_path / "coturn") as running:
        yield running


@pytest.fixture
def agent() -> Iterator[tuple[SipAgent, Recorder]]:
    recorder = Recorder()
    engine = SipAgent(fast(stun_interval=0.5, stun_timeout=1.0), recorder)
    engine.start()
    yield engine, recorder
    engine.stop(timeout=5)


def register_trunk(port: int, nat: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"type": "register", "host": f"127.0.0.1:{port}", "transport": "udp",
            "username": "1001", "password": PASSWORD, "enabled": True,
            "nat": {"enabled": True, "external_ip": "", "local_networks": [],
                    "stun_server": "", **nat}, **fields}


def contact_port(uri: str) -> int:
    """The port of a registered Contact URI (sip:user@host:port;params)."""
    return int(uri.split("@", 1)[1].split(";")[0].rsplit(":", 1)[1])


def registered(o: Any) -> bool:
    return bool(o.state == TrunkState.REGISTERED)


def test_stun_from_the_sip_socket_puts_the_nat_mapping_in_the_contact_and_a_move_re_registers(
        kamailio: Kamailio, coturn: Coturn, agent: tuple[SipAgent, Recorder]) -> None:
    engine, recorder = agent
    assert engine.transport is not None
    agent_port = engine.transport.listen_port
    with NatBox([("127.0.0.1", kamailio.udp), ("127.0.0.1", coturn.port)]) as nat:
        engine.update("acme", "t1", register_trunk(
            nat.front(("127.0.0.1", kamailio.udp)),
            {"stun_server": f"127.0.0.1:{nat.front(('127.0.0.1', coturn.port))}"}))
        first = recorder.wait("t1", registered)
        mapped = nat.mappings()[("127.0.0.1", agent_port)]
        assert mapped != agent_port  # the NAT's outside port, not the socket's own
        contact = first.contacts[0].uri
        assert contact.startswith(f"sip:1001@127.0.0.1:{mapped};")  # what coturn saw
        assert kamailio.contacts("1001") == [contact]

        nat.rebind()  # the NAT forgets the binding: the next datagram gets another port
        moved = recorder.wait("t1", lambda o: registered(o) and o.contacts[0].uri != contact)
        remapped = nat.mappings()[("127.0.0.1", agent_port)]
        assert remapped != mapped
        assert moved.contacts[0].uri.startswith(f"sip:1001@127.0.0.1:{remapped};")
        # the new Contact is bound and the old one removed in the same REGISTER
        wait_for(lambda: kamailio.contacts("1001") == [moved.contacts[0].uri], 10,
                 "Kamailio holds the new Contact only")
        engine.update("acme", "t1", None)
        recorder.wait("t1", lambda o: o.state == TrunkState.UNREGISTERED)
        assert kamailio.contacts("1001") == []


def test_without_external_ip_or_stun_the_registrars_rport_answer_is_registered(
        kamailio: Kamailio, agent: tuple[SipAgent, Recorder]) -> None:
    engine, recorder = agent
    assert engine.transport is not None
    agent_port = engine.transport.listen_port
    with NatBox([("127.0.0.1", kamailio.udp)]) as nat:
        engine.update("acme", "t1", register_trunk(nat.front(("127.0.0.1", kamailio.udp)),
                                                   {}))
        mapped = 0

        def at_mapping(o: Any) -> bool:
            nonlocal mapped
            mapped = nat.mappings().get(("127.0.0.1", agent_port), 0)
            return registered(o) and contact_port(o.contacts[0].uri) == mapped

        found = recorder.wait("t1", at_mapping)
        assert mapped != agent_port
        wait_for(lambda: kamailio.contacts("1001") == [found.contacts[0].uri], 10,
                 "only the Contact at the NAT's address stays bound")


def test_a_local_network_gets_the_private_address_and_others_the_external_ip(
        kamailio: Kamailio, agent: tuple[SipAgent, Recorder]) -> None:
    engine, recorder = agent
    assert engine.transport is not None
    local = engine.transport.listen_port
    engine.update("acme", "t1", register_trunk(kamailio.udp, {
        "external_ip": "198.51.100.7", "local_networks": ["127.0.0.0/8"]}))
    inside = recorder.wait("t1", registered).contacts[0].uri
    assert inside.startswith(f"sip:1001@127.0.0.1:{local};")
    engine.update("acme", "t1", register_trunk(kamailio.udp, {
        "external_ip": "198.51.100.7", "local_networks": ["10.0.0.0/8"]}))
    outside = recorder.wait("t1", lambda o: registered(o) and o.contacts[0].uri != inside)
    assert outside.contacts[0].uri.startswith(f"sip:1001@198.51.100.7:{local};")
    assert kamailio.contacts("1001") == [outside.contacts[0].uri]


def test_the_from_user_leaves_the_registration_under_the_account(
        kamailio: Kamailio, agent: tuple[SipAgent, Recorder]) -> None:
    """From and To of a REGISTER are the address of record (RFC 3261 10.2): a From user
    for calls must not move the binding, and Kamailio's auth_check (which compares the
    To user with the credentials) accepts it."""
    engine, recorder = agent
    trunk = register_trunk(kamailio.udp, {}, from_user="15550001")
    trunk["nat"]["enabled"] = False
    engine.update("acme", "t1", trunk)
    found = recorder.wait("t1", registered)
    assert kamailio.contacts("1001") == [found.contacts[0].uri]


def options(port: int, via_params: str) -> bytes:
    return (f"OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKrport1{via_params}\r\n"
            f"From: <sip:probe@192.0.2.9>;tag=a1\r\nTo: <sip:agent@127.0.0.1>\r\n"
            f"Call-ID: rport-{port}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


@pytest.mark.parametrize("params", [";rport", ""])
def test_the_agent_answers_rport_to_the_source_address_and_port(
        params: str, agent: tuple[SipAgent, Recorder]) -> None:
    """The Via says 192.0.2.9:5060 (a NAT's inside); the answer goes to where the request
    came from, with received= always (the address differs) and rport= when asked, even to
    a minimal OPTIONS (the answer may exceed it by that much, no more)."""
    engine, _ = agent
    assert engine.transport is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(5)
        port = client.getsockname()[1]
        asked = options(port, params)
        client.sendto(asked, ("127.0.0.1", engine.transport.listen_port))
        data = client.recv(65535)
    answer = parse(data)
    assert isinstance(answer, Response) and answer.status == 200
    # no amplification beyond the source's own address and port written into the Via
    assert len(data) <= len(asked) + len(f";received=127.0.0.1;rport={port}")
    via = answer.get("via")
    assert ";received=127.0.0.1" in via
    assert (f";rport={port}" in via) == bool(params)
    assert via.startswith("SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKrport1")


def test_doctor_asks_the_stun_server_and_explains_one_that_does_not_answer(
        coturn: Coturn, tmp_path: Path) -> None:
    (tmp_path / "service").mkdir()
    server = Server(tmp_path / "service")
    server.start()
    try:
        silent = free_port()  # nothing listens there
        for name, stun in (("stunned", coturn.port), ("stun-dead", silent)):
            created = server.cli("trunk", "create", name, "--type", "register", "--host",
                                 "127.0.0.1:9", "--username", "u", "--password", PASSWORD,
                                 "--nat", "on", "--stun", f"127.0.0.1:{stun}")
            assert created.returncode == 0, created.stderr
        report = subprocess.run([*CLI, "--server", f"127.0.0.1:{server.port}", "doctor"],
                                env=server.local_env(), capture_output=True, text=True,
                                timeout=90, check=False)
    finally:
        server.stop()
    lines = report.stdout
    assert f"OK   trunk stunned: STUN server 127.0.0.1:{coturn.port} answers: public " \
           "address 127.0.0.1:" in lines, lines
    assert f"FAIL trunk stun-dead: STUN server 127.0.0.1:{silent} unreachable" in lines, lines
    assert "--external-ip YOUR.PUBLIC.IP" in lines and "lets UDP out to it" in lines
