"""doctor's word on a peer trunk's address: a provider trusts one address, so an agent
behind NAT must show its public one; an agent listening on a public address needs nothing."""

from __future__ import annotations

from typing import Any

from infra.ops.doctor import _peer_address
from sipagent.settings import SipSettings


def peer(**nat: Any) -> dict[str, Any]:
    return {"type": "peer", "nat": {"enabled": False, "external_ip": "", "stun_server": "",
                                    **nat}}


def said(trunk: dict[str, Any], listen: str) -> list[str]:
    return [f.text for f in _peer_address("carrier", "trunk carrier", trunk,
                                          SipSettings(listen_host=listen))]


def test_a_public_listen_address_needs_no_nat() -> None:
    assert said(peer(), "9.9.9.9") == []  # globally routable (TEST-NET ranges are not)


def test_a_private_listen_address_with_nat_off_is_warned_with_the_fix() -> None:
    [text] = said(peer(), "10.0.0.5")
    assert "NAT off" in text and "10.0.0.5" in text


def test_nat_on_without_an_address_says_rport_learns_it() -> None:
    [text] = said(peer(enabled=True), "10.0.0.5")
    assert "rport" in text


def test_an_external_ip_or_stun_server_is_enough() -> None:
    assert said(peer(enabled=True, external_ip="198.51.100.1"), "10.0.0.5") == []
    assert said(peer(enabled=True, stun_server="stun.example.net"), "10.0.0.5") == []
    assert said({"type": "register", "nat": peer()["nat"]}, "10.0.0.5") == []
