"""STUN message handling (RFC 5389) and the Via's received/rport (RFC 3581), on bytes and
headers as real servers write them (coturn's answer below was captured on this machine)."""

from __future__ import annotations

import struct

import pytest

from sipagent.nat import rewrites, stun_server
from sipagent.sip.message import Request, Response
from sipagent.sip.stun import (
    MAGIC_COOKIE,
    Mapping,
    StunError,
    binding_request,
    is_stun,
    parse_binding_response,
)
from sipagent.sip.via import reflected, stamp_received

# coturn 4.6's answer to a Binding request sent from 127.0.0.1:51147: XOR-MAPPED-ADDRESS,
# MAPPED-ADDRESS and RESPONSE-ORIGIN.
COTURN = bytes.fromhex(
    "010100242112a442d23191ae04ff4121c626b76f002000080001e6d95e12a443000100080001c7cb7f000001"
    "802b0008000187dd7f000001")


def test_coturns_answer_gives_the_mapping() -> None:
    assert parse_binding_response(COTURN) == Mapping("127.0.0.1", 51147)
    assert is_stun(COTURN)


def test_a_request_is_twenty_bytes_with_the_cookie_and_a_fresh_transaction() -> None:
    transaction, data = binding_request()
    assert len(data) == 20 and data[:4] == b"\x00\x01\x00\x00"
    assert struct.unpack("!I", data[4:8])[0] == MAGIC_COOKIE and data[8:] == transaction
    assert binding_request()[0] != transaction


def test_an_error_response_names_its_code() -> None:
    reason = b"Bad Request"
    value = b"\x00\x00\x04\x00" + reason
    attribute = struct.pack("!HH", 0x0009, len(value)) + value + b"\x00" * (-len(value) % 4)
    data = struct.pack("!HHI12s", 0x0111, len(attribute), MAGIC_COOKIE, b"x" * 12) + attribute
    with pytest.raises(StunError, match="STUN error 400 Bad Request"):
        parse_binding_response(data)


@pytest.mark.parametrize("data", [b"SIP/2.0 200 OK\r\n\r\n" + b"x" * 10,
                                  b"OPTIONS sip:a SIP/2.0\r\n", b"\r\n\r\n", b""])
def test_sip_is_never_taken_for_stun(data: bytes) -> None:
    assert not is_stun(data)


def request(via: str) -> Request:
    return Request(method="OPTIONS", uri="sip:a@b", headers=[("Via", via), ("To", "<sip:a@b>")])


def test_rport_asked_is_filled_with_the_source_and_received_added() -> None:
    message = request("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport, SIP/2.0/UDP p:5060")
    stamp_received(message, "203.0.113.4", 40123)
    assert message.get("via") == (
        "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;received=203.0.113.4;rport=40123")
    assert message.all("via")[1] == "SIP/2.0/UDP p:5060"  # only the top one


def test_received_only_when_the_address_differs_and_rport_was_not_asked() -> None:
    same = request("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1")
    stamp_received(same, "10.0.0.5", 5060)
    assert same.get("via") == "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1"
    other = request("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1")
    stamp_received(other, "203.0.113.4", 1)
    assert other.get("via") == "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;received=203.0.113.4"


def test_reflected_reads_what_the_server_saw() -> None:
    answer = Response(status=200, reason="OK", headers=[
        ("Via", "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;received=203.0.113.4;rport=40123")])
    assert reflected(answer) == ("203.0.113.4", 40123)
    kamailio = Response(status=200, reason="OK", headers=[  # no received when it is the same
        ("Via", "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1;rport=41000")])
    assert reflected(kamailio) == ("127.0.0.1", 41000)
    unfilled = Response(status=200, reason="OK", headers=[
        ("Via", "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport")])
    assert reflected(unfilled) is None


def test_local_networks_are_not_rewritten() -> None:
    nat = {"enabled": True, "external_ip": "", "stun_server": "stun.example.com:3478",
           "local_networks": ["10.0.0.0/8", "fd00::/8"]}
    assert not rewrites(nat, "10.1.2.3") and not rewrites(nat, "fd00::1")
    assert rewrites(nat, "192.0.2.1")
    assert not rewrites({**nat, "enabled": False}, "192.0.2.1")
    assert stun_server(nat) == "stun.example.com:3478"
    assert stun_server({**nat, "external_ip": "198.51.100.7"}) == ""  # the IP given wins


def test_the_public_address_prefers_the_external_ip_then_stun_then_rport() -> None:
    from sipagent.nat import PublicAddress, _Watch
    from sipagent.sip.transport import Destination, SipTransport

    transport = SipTransport("10.0.0.5", 5062)
    transport.stream_ports["tcp"] = 5062

    async def never(host: str, kind: str) -> Destination:
        raise AssertionError("nothing is resolved here")

    public = PublicAddress(transport, never, 30.0, 3.0)
    udp, tcp = Destination("udp", "192.0.2.1", 5060), Destination("tcp", "192.0.2.1", 5060)
    nat = {"enabled": True, "external_ip": "", "stun_server": "stun.example.com:3478",
           "local_networks": ["10.0.0.0/8"]}
    assert public.for_trunk(nat, udp) is None  # nothing learned yet: the local address
    public.learn(udp, Response(status=200, reason="OK", headers=[
        ("Via", "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK1;received=203.0.113.9;rport=1024")]))
    assert public.for_trunk(nat, udp) == ("203.0.113.9", 1024)
    public._watches["stun.example.com:3478"] = _Watch("stun.example.com:3478",
                                                      Mapping("203.0.113.7", 40000))
    assert public.for_trunk(nat, udp) == ("203.0.113.7", 40000)
    assert public.for_trunk(nat, tcp) == ("203.0.113.7", 5062)  # a connection: our listener
    assert public.for_trunk({**nat, "external_ip": "198.51.100.1"}, udp) == (
        "198.51.100.1", 5062)
    assert public.for_trunk(nat, Destination("udp", "10.1.1.1", 5060)) is None  # local
    assert public.for_trunk({**nat, "enabled": False}, udp) is None
