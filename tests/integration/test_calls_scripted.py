"""The B2BUA against scripted SIP peers on loopback (tests/sipua.py): every protocol case
that needs a peer to misbehave on cue (503, 486, silence, a vanished far end), with what
the far side received, the channel counts and the call records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.calls import PbxAccess
from sipagent.calls.sdp import codecs_of
from sipagent.sip.message import Request
from tests.calls_rig import Rig, wait_for
from tests.dns_server import DnsServer
from tests.sipua import ThreadedUA


@pytest.fixture
def rig() -> Iterator[Rig]:
    running = Rig()
    yield running
    running.close()


@pytest.fixture
def pbx() -> Iterator[ThreadedUA]:
    phone = ThreadedUA()
    yield phone
    phone.close()


def provider(answer: int | str = "answer") -> ThreadedUA:
    return ThreadedUA(answer)


def peer_trunk(rig: Rig, name: str, far: ThreadedUA, **fields: object) -> str:
    trunk_id = rig.trunk(name, peer_addresses=[f"127.0.0.1:{far.port}"], **fields)
    rig.wait_live(trunk_id)
    return trunk_id


def test_outbound_call_is_answered_carried_and_freed_on_bye(rig: Rig, pbx: ThreadedUA) -> None:
    far = provider()
    try:
        trunk = peer_trunk(rig, "carrier", far, codecs=["PCMA"], dtmf_mode="info",
                           from_user="15550001")
        rig.route("all", [trunk], [{"match": ".", "prefix": "9", "prepend": "1"}])
        outcome = pbx.run(pbx.ua.call(rig.pbx_address, "92125551234", caller="201"))
        assert outcome.code == 200
        assert [r.status for r in outcome.responses][-2:] == [180, 200]
        invite = far.ua.received("INVITE")[0]
        assert invite.uri.startswith("sip:12125551234@127.0.0.1:")  # strip 9, prepend 1
        assert "<sip:15550001@127.0.0.1>" in invite.get("from")  # the trunk's From user
        assert codecs_of(invite.body) == ["PCMA"]  # no telephone-event: DTMF as INFO
        assert rig.channels(trunk) == (0, 1)
        wait_for(lambda: bool(far.ua.received("ACK")), 5, "the ACK end to end")
        assert pbx.run(pbx.ua.bye(rig.pbx_address, outcome)).status == 200
        wait_for(lambda: bool(far.ua.received("BYE")), 5, "BYE relayed")
        assert rig.channels(trunk) == (0, 0)
        record = rig.records.records[-1]
        assert (record.direction, record.final_code, record.hangup_by) == (
            "outbound", 200, "pbx")
        assert (record.number_received, record.number_sent) == ("92125551234", "12125551234")
        assert record.answered_at is not None and record.trunk_id == trunk
    finally:
        far.close()


def test_rfc2833_trunk_keeps_telephone_event(rig: Rig, pbx: ThreadedUA) -> None:
    far = provider()
    try:
        trunk = peer_trunk(rig, "carrier", far, codecs=["PCMU"], dtmf_mode="rfc2833")
        rig.route("all", [trunk])
        outcome = pbx.run(pbx.ua.call(rig.pbx_address, "2125551234"))
        assert outcome.code == 200
        assert codecs_of(far.ua.received("INVITE")[0].body) == ["PCMU", "telephone-event"]
        pbx.run(pbx.ua.bye(rig.pbx_address, outcome))
    finally:
        far.close()


def test_503_fails_over_486_does_not(rig: Rig, pbx: ThreadedUA) -> None:
    bad, good, busy = provider(503), provider(), provider(486)
    try:
        first = peer_trunk(rig, "first", bad)
        second = peer_trunk(rig, "second", good)
        rig.route("all", [first, second], [{"match": "2.", "prefix": "", "prepend": ""}])
        outcome = pbx.run(pbx.ua.call(rig.pbx_address, "2125551234"))
        assert outcome.code == 200 and len(good.ua.received("INVITE")) == 1
        assert len(bad.ua.received("ACK")) == 1  # the 503 ACKed hop by hop
        pbx.run(pbx.ua.bye(rig.pbx_address, outcome))
        wait_for(lambda: rig.channels(second) == (0, 0), 5, "freed")
        record = rig.records.records[-1]
        assert [(a.trunk_name, a.code) for a in record.attempts] == [("first", 503),
                                                                    ("second", 200)]
        third = peer_trunk(rig, "busy", busy)
        rig.route("busy-first", [third, second], [{"match": "3XX", "prefix": "", "prepend": ""}])
        before = len(good.ua.received("INVITE"))
        outcome = pbx.run(pbx.ua.call(rig.pbx_address, "300"))
        assert outcome.code == 486
        assert len(good.ua.received("INVITE")) == before  # nothing retried
        assert rig.channels(third) == (0, 0)
    finally:
        for far in (bad, good, busy):
            far.close()


def test_silent_provider_fails_over_on_timeout(rig: Rig, pbx: ThreadedUA) -> None:
    silent, good = provider("silent"), provider()
    try:
        first = peer_trunk(rig, "first", silent)
        second = peer_trunk(rig, "second", good)
        rig.route("all", [first, second])
        outcome = pbx.run(pbx.ua.call(rig.pbx_address, "2125551234"))
        assert outcome.code == 200
        assert len(silent.ua.received("INVITE")) >= 2  # retransmitted on UDP
        record_attempts = None
        pbx.run(pbx.ua.bye(rig.pbx_address, outcome))
        wait_for(lambda: bool(rig.records.records), 5, "a record")
        record_attempts = [a.code for a in rig.records.records[-1].attempts]
        assert record_attempts == [0, 200]
    finally:
        silent.close()
        good.close()


def test_two_channel_trunk_never_carries_a_third_call(rig: Rig, pbx: ThreadedUA) -> None:
    far = provider()
    try:
        trunk = peer_trunk(rig, "small", far, call_limits={"max_concurrent_calls": 2})
        rig.route("all", [trunk])
        calls = [pbx.run(pbx.ua.call(rig.pbx_address, "2125551234")) for _ in range(3)]
        assert [c.code for c in calls] == [200, 200, 486]
        assert len(far.ua.received("INVITE")) == 2 and far.ua.max_up == 2
        assert rig.channels(trunk) == (0, 2)
        for outcome in calls[:2]:
            pbx.run(pbx.ua.bye(rig.pbx_address, outcome))
        wait_for(lambda: rig.channels(trunk) == (0, 0), 5, "freed")
    finally:
        far.close()


def test_cancel_before_answer(rig: Rig, pbx: ThreadedUA) -> None:
    far = provider("ring")
    try:
        trunk = peer_trunk(rig, "carrier", far)
        rig.route("all", [trunk])
        invite = pbx.ua.invite(rig.pbx_address, "2125551234", "201", "cancel-test@pbx")

        async def ring_then_cancel() -> object:
            import asyncio
            placing = asyncio.ensure_future(pbx.ua.send_invite(rig.pbx_address, invite))
            await asyncio.sleep(0.5)
            await pbx.ua.cancel(rig.pbx_address, invite)
            return await placing
        outcome = pbx.run(ring_then_cancel())
        assert outcome.code == 487
        wait_for(lambda: bool(far.ua.received("CANCEL")), 5, "CANCEL relayed")
        wait_for(lambda: rig.channels(trunk) == (0, 0), 5, "freed")
        assert rig.records.records[-1].hangup_by == "pbx"
    finally:
        far.close()


def test_vanished_far_end_is_freed_by_the_guard(rig: Rig, pbx: ThreadedUA) -> None:
    far = provider()
    try:
        trunk = peer_trunk(rig, "carrier", far)
        rig.route("all", [trunk])
        outcome = pbx.run(pbx.ua.call(rig.pbx_address, "2125551234"))
        assert outcome.code == 200 and rig.channels(trunk) == (0, 1)
        far.ua.dead = True  # its BYE will never come, nor answers to probes
        wait_for(lambda: rig.channels(trunk) == (0, 0), 20, "the guard to free the channel")
        assert rig.records.records[-1].hangup_by == "guard"
        wait_for(lambda: bool(pbx.ua.received("BYE")), 5, "BYE to the PBX")
    finally:
        far.close()


def test_nat_external_ip_in_contact_and_via(rig: Rig, pbx: ThreadedUA) -> None:
    far = provider()
    try:
        trunk = peer_trunk(rig, "carrier", far, nat={"enabled": True,
                                                     "external_ip": "203.0.113.7"})
        rig.route("all", [trunk])
        outcome = pbx.run(pbx.ua.call(rig.pbx_address, "2125551234"))
        invite = far.ua.received("INVITE")[0]
        assert "203.0.113.7" in invite.get("contact") and "203.0.113.7" in invite.get("via")
        probe = far.ua.received("OPTIONS")[0]  # the peer trunk's OPTIONS too
        assert probe.get("via").startswith("SIP/2.0/UDP 203.0.113.7:")
        pbx.run(pbx.ua.bye(rig.pbx_address, outcome))
    finally:
        far.close()


def test_a_provider_in_the_local_networks_gets_the_private_address(
        rig: Rig, pbx: ThreadedUA) -> None:
    far = provider()
    try:
        trunk = peer_trunk(rig, "carrier", far, nat={
            "enabled": True, "external_ip": "203.0.113.7", "local_networks": ["127.0.0.0/8"]})
        rig.route("all", [trunk])
        outcome = pbx.run(pbx.ua.call(rig.pbx_address, "2125551234"))
        invite = far.ua.received("INVITE")[0]
        assert "203.0.113.7" not in invite.get("contact") + invite.get("via")
        assert "@127.0.0.1:" in invite.get("contact")
        assert invite.get("via").startswith("SIP/2.0/UDP 127.0.0.1:")
        assert far.ua.received("OPTIONS")[0].get("via").startswith("SIP/2.0/UDP 127.0.0.1:")
        pbx.run(pbx.ua.bye(rig.pbx_address, outcome))
    finally:
        far.close()


def test_unknown_pbx_source_gets_403() -> None:
    rig = Rig(access=PbxAccess("acme", ("10.9.9.0/24",)))
    phone = ThreadedUA()
    try:
        outcome = phone.run(phone.ua.call(rig.pbx_address, "2125551234"))
        assert outcome.code == 403
        assert rig.b2bua.counters.calls.get("pbx_refused_source") == 1
    finally:
        phone.close()
        rig.close()


def test_pbx_digest_is_checked() -> None:
    rig = Rig(access=PbxAccess("acme", ("127.0.0.0/8",), "pbx1", "Secret-Pass-123"))
    phone = ThreadedUA()
    far = provider()
    try:
        trunk = peer_trunk(rig, "carrier", far)
        rig.route("all", [trunk])
        outcome = phone.run(phone.ua.call(rig.pbx_address, "2125551234"))
        assert outcome.code == 407
        from sipagent.sip.digest import DigestClient, parse_challenge
        challenge = parse_challenge(outcome.final.get("proxy-authenticate"), True)
        for password, code in (("wrong-password-1", 403), ("Secret-Pass-123", 200)):
            answer = DigestClient("pbx1", password).answer(challenge, "INVITE",
                                                          outcome.invite.uri)
            again = phone.run(phone.ua.call(rig.pbx_address, "2125551234", extra=[
                ("Proxy-Authorization", answer)]))
            assert again.code == code
        assert len(far.ua.received("INVITE")) == 1
        assert rig.b2bua.counters.calls.get("pbx_auth_failed") == 1
    finally:
        phone.close()
        far.close()
        rig.close()


def test_info_reinvite_and_inbound_limits(rig: Rig, pbx: ThreadedUA) -> None:
    far, info_far = provider(), provider()
    try:
        rfc = peer_trunk(rig, "rfc", far, dtmf_mode="rfc2833")
        info = peer_trunk(rig, "info", info_far, dtmf_mode="info",
                          call_limits={"max_inbound_calls": 1})
        rig.route("rfc", [rfc], [{"match": "2.", "prefix": "", "prepend": ""}])
        rig.route("info", [info], [{"match": "3.", "prefix": "", "prepend": ""}])
        digit = b"Signal=5\r\nDuration=160\r\n"
        for number, far_end, relayed in (("2125551234", far, False), ("3125551234", info_far,
                                                                        True)):
            outcome = pbx.run(pbx.ua.call(rig.pbx_address, number))
            assert outcome.code == 200
            answer = pbx.run(pbx.ua.in_dialog(rig.pbx_address, outcome, "INFO", 2, body=digit,
                                              content_type="application/dtmf-relay"))
            assert answer is not None and answer.status == 200
            assert bool(far_end.ua.received("INFO")) is relayed  # only for DTMF mode INFO
            again = pbx.run(pbx.ua.in_dialog(rig.pbx_address, outcome, "INVITE", 3,
                                             body=outcome.invite.body,
                                             content_type="application/sdp"))
            assert again is not None and again.status == 200 and again.body  # re-INVITE
            reinvite = [r for r in far_end.ua.received("INVITE") if ";tag=" in r.get("to")]
            assert len(reinvite) == 1 and reinvite[0].body
            pbx.run(pbx.ua.bye(rig.pbx_address, outcome))
        # inbound: the info trunk takes one inbound call at a time
        rig.inbound("15550100", "ext:100", info)
        pbx_phone = ThreadedUA("ring")
        try:
            rig.targets(f"sip:127.0.0.1:{pbx_phone.port}")
            ringing = info_far.ua.invite(rig.provider_address, "15550100", "4420", "in-1@far")

            async def two_calls() -> tuple[object, object]:
                import asyncio
                first = asyncio.ensure_future(info_far.ua.send_invite(
                    rig.provider_address, ringing, wait=3.0))
                await asyncio.sleep(0.5)
                second = await info_far.ua.call(rig.provider_address, "15550100")
                await info_far.ua.cancel(rig.provider_address, ringing)
                return await first, second
            first, second = info_far.run(two_calls())
            assert second.code == 486 and "1 of 1 inbound" in second.final.reason
            assert first.code == 487
            assert rig.b2bua.counters.calls.get("inbound_refused_486") == 1
            wait_for(lambda: rig.channels(info) == (0, 0), 5, "freed")
        finally:
            pbx_phone.close()
    finally:
        far.close()
        info_far.close()


def test_inbound_on_peer_trunk_goes_to_the_pbx_with_headers(rig: Rig) -> None:
    far, pbx_phone = provider(), ThreadedUA()
    try:
        trunk = peer_trunk(rig, "carrier", far)
        rig.inbound("15550100", "ext:100", trunk)
        rig.inbound("15550100", "ivr:vip", trunk, caller="+4420XXXXXXXX")
        rig.targets(f"sip:127.0.0.1:{pbx_phone.port}")
        outcome = far.run(far.ua.call(rig.provider_address, "15550100", caller="12125550000"))
        assert outcome.code == 200
        invite = pbx_phone.ua.received("INVITE")[0]
        assert invite.get("x-trunkplane-did") == "15550100"
        assert invite.get("x-trunkplane-trunk") == "carrier"
        assert invite.get("x-trunkplane-destination") == "ext:100"
        assert rig.channels(trunk) == (1, 0)
        far.run(far.ua.bye(rig.provider_address, outcome))
        wait_for(lambda: rig.channels(trunk) == (0, 0), 5, "freed")
        vip = far.run(far.ua.call(rig.provider_address, "15550100", caller="+442071234567"))
        assert pbx_phone.ua.received("INVITE")[-1].get("x-trunkplane-destination") == "ivr:vip"
        far.run(far.ua.bye(rig.provider_address, vip))
        missing = far.run(far.ua.call(rig.provider_address, "15559999"))
        assert missing.code == 404
        assert rig.b2bua.counters.calls.get("inbound_no_route") == 1
    finally:
        far.close()
        pbx_phone.close()


def test_inbound_call_on_a_trunk_behind_nat_answers_with_the_public_contact(rig: Rig) -> None:
    far, pbx_phone = provider(), ThreadedUA()
    try:
        trunk = peer_trunk(rig, "carrier", far, nat={"enabled": True,
                                                     "external_ip": "203.0.113.7"})
        rig.inbound("15550100", "ext:100", trunk)
        rig.targets(f"sip:127.0.0.1:{pbx_phone.port}")
        outcome = far.run(far.ua.call(rig.provider_address, "15550100"))
        assert outcome.code == 200 and outcome.final is not None
        assert outcome.final.get("contact").startswith("<sip:203.0.113.7:")
        assert "rport=" in outcome.final.get("via")  # the answer names where it came from
        far.run(far.ua.bye(rig.provider_address, outcome))
        wait_for(lambda: rig.channels(trunk) == (0, 0), 5, "freed")
    finally:
        far.close()
        pbx_phone.close()


def test_inbound_from_an_unlisted_address_gets_403(rig: Rig) -> None:
    far, stranger = provider(), ThreadedUA()
    try:
        trunk = rig.trunk("carrier", peer_addresses=["127.0.0.99:5060"])
        rig.inbound("15550100", "ext:100", trunk)
        outcome = stranger.run(stranger.ua.call(rig.provider_address, "15550100"))
        assert outcome.code == 403
        assert rig.b2bua.counters.calls.get("inbound_refused_source") == 1
    finally:
        far.close()
        stranger.close()


def test_malformed_invites_get_400_and_count_nothing(rig: Rig, pbx: ThreadedUA) -> None:
    bad = [
        b"INVITE sip:1@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n"
        b"From: <sip:a@b>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        b"INVITE sip:1@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKy\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:1@b>\r\nCall-ID: y\r\nCSeq: x INVITE\r\n"
        b"Content-Length: 0\r\n\r\n",
        b"INVITE sip:1@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKz\r\n"
        b"From: <sip:a@b>\r\nTo: <sip:1@b>\r\nCall-ID: z\r\nCSeq: 1 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n",
    ]
    for address in (rig.pbx_address, rig.provider_address):
        for data in bad:
            pbx.ua.requests.clear()
            pbx.call_soon(pbx.ua.send_raw, data, address)
    wait_for(lambda: True, 0.1)
    assert rig.b2bua.counters.calls == {}
    assert not rig.b2bua.calls


def _unused(_: Request) -> None:
    pass


def test_pbx_face_over_tcp_and_tls(tmp_path: Path) -> None:
    """An INVITE over TCP and over TLS on the PBX face is answered on its own connection
    (100 Trying, then the final answer: the tenant has no trunk here, 503)."""
    import socket
    import ssl
    import subprocess

    cert, key = tmp_path / "face.crt", tmp_path / "face.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                    str(key), "-out", str(cert)], check=True, capture_output=True)
    rig = Rig(pbx_tls_port=0, tls_cert=str(cert), tls_key=str(key))
    try:
        assert rig.b2bua.pbx is not None
        ports = rig.b2bua.pbx.transport.stream_ports
        context = ssl.create_default_context(cafile=str(cert))
        for kind in ("tcp", "tls"):
            raw = socket.create_connection(("127.0.0.1", ports[kind]), timeout=5)
            stream = context.wrap_socket(raw, server_hostname="127.0.0.1") if kind == "tls" \
                else raw
            with stream:
                local = stream.getsockname()
                via = f"SIP/2.0/{kind.upper()} 127.0.0.1:{local[1]};branch=z9hG4bK{kind}1"
                invite = (f"INVITE sip:2125551234@127.0.0.1 SIP/2.0\r\nVia: {via}\r\n"
                          f"From: <sip:201@127.0.0.1>;tag=a{kind}\r\n"
                          "To: <sip:2125551234@127.0.0.1>\r\n"
                          f"Call-ID: {kind}-call@pbx\r\nCSeq: 1 INVITE\r\n"
                          f"Contact: <sip:201@127.0.0.1:{local[1]};transport={kind}>\r\n"
                          "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
                stream.sendall(invite)
                received = b""
                while b"SIP/2.0 503" not in received:
                    chunk = stream.recv(65536)
                    assert chunk, received
                    received += chunk
                assert received.startswith(b"SIP/2.0 100 Trying"), received
    finally:
        rig.close()


def _hung_up_late(late: ThreadedUA) -> None:
    """The late 200 was ACKed, then the dialog it made hung up with BYE (RFC 3261
    13.2.2.4): the far end holds no call."""
    invite = late.ua.received("INVITE")[0]
    wait_for(lambda: bool(late.ua.received("BYE")), 10, "the BYE of the late answer")
    acks = [r for r in late.ua.received("ACK") if r.get("call-id") == invite.get("call-id")]
    byes = [r for r in late.ua.received("BYE") if r.get("call-id") == invite.get("call-id")]
    assert acks and byes
    assert acks[0].cseq() == (invite.cseq()[0], "ACK")
    assert byes[0].cseq()[0] > invite.cseq()[0]
    assert ";tag=" in byes[0].get("to")  # in the dialog of the 2xx
    wait_for(lambda: late.ua.calls_up == 0, 5, "the late call down at the far end")


def test_a_late_answer_on_a_pbx_target_given_up_is_acked_and_hung_up(rig: Rig) -> None:
    """Inbound: the first PBX target hears nothing for the provider timeout (1.5 s), the
    call goes to the second; the first answers 200 at 2.5 s, on a transaction that used to
    be forgotten."""
    far, late, good = provider(), ThreadedUA("late"), ThreadedUA()
    late.ua.answer_delay = 2.5
    try:
        trunk = peer_trunk(rig, "carrier", far)
        rig.inbound("15550100", "ext:100", trunk)
        rig.targets(f"sip:127.0.0.1:{late.port}", f"sip:127.0.0.1:{good.port}")
        outcome = far.run(far.ua.call(rig.provider_address, "15550100"))
        assert outcome.code == 200
        assert len(good.ua.received("INVITE")) == 1
        _hung_up_late(late)
        assert rig.b2bua.counters.calls.get("late_answer_hung_up") == 1
        assert rig.channels(trunk) == (1, 0)  # the call through the second target goes on
        assert far.run(far.ua.bye(rig.provider_address, outcome)) is not None
        wait_for(lambda: rig.channels(trunk) == (0, 0), 5, "freed")
        wait_for(lambda: good.ua.calls_up == 0, 5, "the call down at the second target")
        wait_for(lambda: bool(rig.records.records), 5, "a record")
        assert [a.code for a in rig.records.records[-1].attempts] == [0, 200]
    finally:
        for ua in (far, late, good):
            ua.close()


def test_a_late_answer_after_cancel_is_acked_and_hung_up(rig: Rig, pbx: ThreadedUA) -> None:
    """Outbound, one target: the PBX cancels before anything was heard (nothing to CANCEL
    yet), the provider timeout passes, then the provider answers 200."""
    late = ThreadedUA("late")
    late.ua.answer_delay = 2.5
    try:
        trunk = peer_trunk(rig, "carrier", late)
        rig.route("all", [trunk])
        invite = pbx.ua.invite(rig.pbx_address, "2125551234", "201", "cancelled@pbx")
        pbx.call_soon(pbx.ua._send, invite, rig.pbx_address)
        wait_for(lambda: bool(late.ua.received("INVITE")), 5, "the INVITE out")
        pbx.run(pbx.ua.cancel(rig.pbx_address, invite))
        wait_for(lambda: bool(rig.records.records), 5, "a record")
        assert rig.records.records[-1].final_code == 487
        assert rig.channels(trunk) == (0, 0)
        _hung_up_late(late)
    finally:
        late.close()


def test_a_late_answer_on_an_srv_target_left_after_failover_after_is_hung_up(
        rig_dns: tuple[Rig, DnsServer], pbx: ThreadedUA) -> None:
    """Outbound: SRV names a target that says nothing for the trunk's failover_after (1 s),
    then one that answers; the first answers 200 at 2.5 s, after the call is up through the
    second."""
    rig, dns = rig_dns
    late, good = ThreadedUA("late"), ThreadedUA()
    late.ua.answer_delay = 2.5
    try:
        dns.replace("_sip._udp.example.test.", [
            f"_sip._udp.example.test. 60 IN SRV 10 50 {late.port} late.example.test.",
            f"_sip._udp.example.test. 60 IN SRV 20 50 {good.port} good.example.test."])
        for name in ("late", "good"):
            dns.replace(f"{name}.example.test.", [f"{name}.example.test. 60 IN A 127.0.0.1"])
        trunk = rig.trunk("carrier", host="example.test", timers={"failover_after": 1},
                          peer_addresses=[f"127.0.0.1:{late.port}", f"127.0.0.1:{good.port}"])
        rig.wait_live(trunk)
        rig.route("all", [trunk])
        outcome = pbx.run(pbx.ua.call(rig.pbx_address, "2125551234"))
        assert outcome.code == 200
        assert len(good.ua.received("INVITE")) == 1
        _hung_up_late(late)
        assert rig.channels(trunk) == (0, 1)  # the call through the second target goes on
        assert pbx.run(pbx.ua.bye(rig.pbx_address, outcome)) is not None
        wait_for(lambda: rig.channels(trunk) == (0, 0), 5, "freed")
        wait_for(lambda: good.ua.calls_up == 0, 5, "the call down at the second target")
    finally:
        late.close()
        good.close()


@pytest.fixture
def rig_dns(tmp_path: Path) -> Iterator[tuple[Rig, DnsServer]]:
    with DnsServer(tmp_path / "dns", "example.test") as dns:
        running = Rig(sip={"resolver": dns.address, "destinations": ("any",)})
        try:
            yield running, dns
        finally:
            running.close()


def test_a_503_then_a_silent_srv_target_is_recorded_as_the_503_and_its_target(
        rig_dns: tuple[Rig, DnsServer], pbx: ThreadedUA) -> None:
    """SRV names a target that answers 503, then one that never answers: the call record
    (and the PBX's answer) name the 503 and who gave it, not the silence after it."""
    rig, dns = rig_dns
    busy, silent = ThreadedUA(503), ThreadedUA("silent")
    try:
        dns.replace("_sip._udp.example.test.", [
            f"_sip._udp.example.test. 60 IN SRV 10 50 {busy.port} busy.example.test.",
            f"_sip._udp.example.test. 60 IN SRV 20 50 {silent.port} quiet.example.test."])
        for name in ("busy", "quiet"):
            dns.replace(f"{name}.example.test.", [f"{name}.example.test. 60 IN A 127.0.0.1"])
        trunk = rig.trunk("carrier", host="example.test", timers={"failover_after": 1},
                          peer_addresses=[f"127.0.0.1:{busy.port}", f"127.0.0.1:{silent.port}"])
        rig.wait_live(trunk)
        rig.route("all", [trunk])
        outcome = pbx.run(pbx.ua.call(rig.pbx_address, "2125551234"))
        assert outcome.code == 503
        assert silent.ua.received("INVITE")  # the second target was tried
        wait_for(lambda: bool(rig.records.records), 5, "a record")
        record = rig.records.records[-1]
        where = f"udp:127.0.0.1:{busy.port} (busy.example.test)"
        assert record.final_code == 503
        assert record.final_reason.startswith(f"Service Unavailable - from {where}; the next: "
                                              f"no answer from udp:127.0.0.1:{silent.port}")
        assert [(a.code, a.reason) for a in record.attempts] == [
            (503, record.final_reason)]
        assert rig.channels(trunk) == (0, 0)
    finally:
        busy.close()
        silent.close()
