"""Calls through the agent with SIP software nobody here wrote: Kamailio as the provider
(registrar, and a proxy that challenges INVITEs with 407 and sends calls to registered
Contacts, a DID to the trunk's registration) and two baresip phones, one as the PBX and
one as the far end registered at Kamailio. Each test asserts what the far side really got
(events, RTP counts, the SIP trace) and the channel counts and call records after."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.calls import PbxAccess, PbxTarget
from domain.status import TrunkState
from tests.baresip import Baresip
from tests.calls_rig import Rig, wait_for
from tests.coturn import Coturn
from tests.kamailio import Kamailio
from tests.natbox import NatBox

PASSWORD = "Long-Enough-Password-123"
DID = "15550100"


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Kamailio]:
    with Kamailio(tmp_path / "kamailio", {"1001": PASSWORD, "3003": PASSWORD},
                  calls=True, dids={DID: "1001"}) as running:
        yield running


@pytest.fixture
def rig() -> Iterator[Rig]:
    running = Rig(access=PbxAccess("acme", ("127.0.0.0/8",)))
    yield running
    running.close()


@pytest.fixture
def far(tmp_path: Path, kamailio: Kamailio) -> Iterator[Baresip]:
    phone = Baresip(tmp_path, f"<sip:3003@127.0.0.1:{kamailio.udp}>;auth_pass={PASSWORD};"
                    "regint=60", "far")
    wait_for(lambda: bool(kamailio.contacts("3003")), 15, "the far end registered")
    yield phone
    phone.stop()


@pytest.fixture
def pbx(tmp_path: Path) -> Iterator[Baresip]:
    phone = Baresip(tmp_path, "<sip:201@127.0.0.1>;regint=0", "pbx", trace=True)
    yield phone
    phone.stop()


def register_trunk(rig: Rig, kamailio: Kamailio, name: str = "carrier",
                   **fields: object) -> str:
    trunk = rig.trunk(name, **{"type": "register", "host": f"127.0.0.1:{kamailio.udp}",
                               "username": "1001", "password": PASSWORD, **fields})
    wait_for(lambda: rig.engine.live_state(trunk) == TrunkState.REGISTERED, 15,
             "the trunk registered")
    return trunk


def answered_call(rig: Rig, pbx: Baresip, far: Baresip, number: str = "3003") -> None:
    pbx.dial(f"sip:{number}@127.0.0.1:{rig.pbx_address[1]}")
    far.wait_event("CALL_INCOMING")
    far.accept()
    pbx.wait_event("CALL_ESTABLISHED")
    far.wait_event("CALL_ESTABLISHED")


def test_outbound_call_through_kamailio_with_media_both_ways(
        rig: Rig, kamailio: Kamailio, far: Baresip, pbx: Baresip) -> None:
    trunk = register_trunk(rig, kamailio)
    rig.route("all", [trunk])
    answered_call(rig, pbx, far)
    assert rig.channels(trunk) == (0, 1)
    time.sleep(1.5)
    pbx_sent, pbx_received = pbx.rtp_counts()
    far_sent, far_received = far.rtp_counts()
    assert min(pbx_sent, pbx_received, far_sent, far_received) > 20, (
        pbx.rtp_counts(), far.rtp_counts())
    pbx.command("sndcode", "5")  # RFC 2833 (the trunk's DTMF mode) end to end
    assert far.wait_event("CALL_DTMF_START").get("param") == "5"
    closed = len(far.seen("CALL_CLOSED"))
    pbx.hangup()
    wait_for(lambda: len(far.seen("CALL_CLOSED")) > closed, 10, "the far end hung up")
    wait_for(lambda: rig.channels(trunk) == (0, 0), 5, "the channel freed")
    record = rig.records.records[-1]
    assert (record.final_code, record.hangup_by, record.trunk_id) == (200, "pbx", trunk)
    assert [a.code for a in record.attempts] == [200]
    assert "Proxy-Authorization" not in str(record)  # nothing of the answer kept

    answered_call(rig, pbx, far)  # now the far end hangs up
    closed = len(pbx.seen("CALL_CLOSED"))
    far.hangup()
    wait_for(lambda: len(pbx.seen("CALL_CLOSED")) > closed, 10, "the PBX hung up")
    wait_for(lambda: rig.channels(trunk) == (0, 0), 5, "the channel freed")
    assert rig.records.records[-1].hangup_by == "provider"


def test_pcma_only_trunk_the_far_end_decodes_pcma_and_sees_the_from_user(
        rig: Rig, kamailio: Kamailio, far: Baresip, pbx: Baresip) -> None:
    """The trunk's From user (not its username 1001) is who the far end sees calling;
    Kamailio takes the digest of 1001 for it, and the registration stays 1001's."""
    trunk = register_trunk(rig, kamailio, codecs=["PCMA"], from_user="15550001")
    rig.route("all", [trunk])
    answered_call(rig, pbx, far)
    caller = far.seen("CALL_INCOMING")[-1]
    assert str(caller.get("peeruri", "")).startswith("sip:15550001@"), caller
    debug = str(far.command("audio_debug").get("data"))
    assert "decode: PCMA" in debug and "PCMU" not in debug
    pbx.hangup()
    wait_for(lambda: rig.channels(trunk) == (0, 0), 10, "the channel freed")


def test_first_provider_down_the_call_completes_on_the_second(
        rig: Rig, kamailio: Kamailio, far: Baresip, pbx: Baresip, tmp_path: Path) -> None:
    with Kamailio(tmp_path / "other", {"1001": PASSWORD}, calls=True) as other:
        first = register_trunk(rig, other, "first")
        other.stop()  # still registered as far as the agent knows: the INVITE goes unanswered
        second = register_trunk(rig, kamailio, "second")
        rig.route("all", [first, second])
        answered_call(rig, pbx, far)
        assert rig.channels(second) == (0, 1) and rig.channels(first) == (0, 0)
        pbx.hangup()
        wait_for(lambda: rig.channels(second) == (0, 0), 10, "the channel freed")
        record = rig.records.records[-1]
        assert [(a.trunk_name, a.code) for a in record.attempts] == [("first", 0),
                                                                    ("second", 200)]


def test_far_end_vanishes_and_the_guard_frees_the_channel(
        rig: Rig, kamailio: Kamailio, far: Baresip, pbx: Baresip) -> None:
    trunk = register_trunk(rig, kamailio)
    rig.route("all", [trunk])
    answered_call(rig, pbx, far)
    far.kill()  # no BYE, ever
    wait_for(lambda: rig.channels(trunk) == (0, 0), 30, "the guard to free the channel")
    assert rig.records.records[-1].hangup_by == "guard"
    pbx.wait_event("CALL_CLOSED")  # and the PBX was told (BYE)


def test_inbound_did_rings_the_pbx_with_the_did_header(
        rig: Rig, kamailio: Kamailio, far: Baresip, pbx: Baresip) -> None:
    trunk = register_trunk(rig, kamailio)
    rig.inbound(DID, "ext:100", trunk)
    rig.directory.accesses[0] = PbxAccess("acme", ("127.0.0.0/8",), targets=(
        PbxTarget("sip:127.0.0.1:9", priority=1),  # nobody there: the next target
        PbxTarget(f"sip:201@127.0.0.1:{pbx.port}", priority=2)))
    far.dial(f"sip:{DID}@127.0.0.1:{kamailio.udp}")
    pbx.wait_event("CALL_INCOMING")
    trace = pbx.log.read_text()
    assert f"X-Trunkplane-DID: {DID}" in trace and "X-Trunkplane-Trunk: carrier" in trace
    assert "X-Trunkplane-Destination: ext:100" in trace
    assert rig.channels(trunk) == (1, 0)
    pbx.accept()
    far.wait_event("CALL_ESTABLISHED")
    time.sleep(1.0)
    assert min(*pbx.rtp_counts(), *far.rtp_counts()) > 10
    far.hangup()
    wait_for(lambda: rig.channels(trunk) == (0, 0), 10, "the channel freed")
    record = rig.records.records[-1]
    assert (record.direction, record.number_received, record.final_code) == (
        "inbound", DID, 200)


def test_a_providers_call_reaches_the_agent_behind_nat_at_its_stun_contact(
        rig: Rig, kamailio: Kamailio, far: Baresip, pbx: Baresip, tmp_path: Path) -> None:
    """The agent behind a NAT (tests/natbox.py) learns its outside port from coturn,
    registers it at Kamailio, and Kamailio's INVITE for the DID comes in through the NAT
    to that Contact; the PBX rings and the call is carried. The far end's ACK and BYE
    reach the agent only along Kamailio's Record-Route (the NAT drops what anyone else
    sends), which the agent's answers therefore copy (RFC 3261 12.1.1)."""
    assert rig.engine.transport is not None
    agent = ("127.0.0.1", rig.engine.transport.listen_port)
    provider = ("127.0.0.1", kamailio.udp)
    with Coturn(tmp_path / "coturn") as coturn, NatBox([provider, ("127.0.0.1", coturn.port)]
                                                       ) as nat:
        trunk = register_trunk(rig, kamailio, host=f"127.0.0.1:{nat.front(provider)}", nat={
            "enabled": True, "external_ip": "", "local_networks": [],
            "stun_server": f"127.0.0.1:{nat.front(('127.0.0.1', coturn.port))}"})
        outside = nat.mappings()[agent]
        assert outside != agent[1]
        assert [c.split(";")[0] for c in kamailio.contacts("1001")] == [
            f"sip:1001@127.0.0.1:{outside}"]
        rig.inbound(DID, "ext:100", trunk)
        rig.targets(f"sip:201@127.0.0.1:{pbx.port}")
        far.dial(f"sip:{DID}@127.0.0.1:{kamailio.udp}")
        pbx.wait_event("CALL_INCOMING")
        assert rig.channels(trunk) == (1, 0)
        pbx.accept()
        far.wait_event("CALL_ESTABLISHED")
        far.hangup()
        wait_for(lambda: rig.channels(trunk) == (0, 0), 10, "the channel freed")
        record = rig.records.records[-1]
        assert (record.direction, record.trunk_id, record.final_code) == (
            "inbound", trunk, 200)
