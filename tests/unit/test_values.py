"""Every trunk validation rule, each with its own message."""

from __future__ import annotations

from typing import Any

import pytest

from domain.errors import ValidationError
from domain.trunk_settings import validate_trunk

REGISTER: dict[str, Any] = {
    "name": "voco", "type": "register", "host": "sip.thevoco.com", "username": "1001",
    "password": "a-long-enough-password", "codecs": ["PCMU"],
}
PEER: dict[str, Any] = {"name": "carrier", "type": "peer", "peer_addresses": ["192.0.2.1"],
                        "codecs": ["PCMA"]}


def violations(**changes: Any) -> dict[str, str]:
    base = PEER if changes.get("type") == "peer" else REGISTER
    with pytest.raises(ValidationError) as caught:
        validate_trunk({**base, **changes})
    return {v.field: v.description for v in caught.value.violations}


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"name": ""}, "name", "must have 1 to 64 characters (got 0)"),
    ({"name": "x" * 65}, "name", "must have 1 to 64 characters (got 65)"),
    ({"name": "bad\x07name"}, "name", "control character '\\x07' at position 3"),
    ({"type": "sip"}, "type", "'sip' is not one of register, peer, account"),
    ({"transport": "sctp"}, "transport", "'sctp' is not one of udp, tcp, tls"),
    ({"host": "bad host"}, "host", "is not a valid domain name"),
    ({"host": "999.1.2.3"}, "host", "neither a valid IP address nor a domain name"),
    ({"host": "sip.example.com:70000"}, "host", "port '70000' must be a number from 1 to 65535"),
    ({"host": "[::1"}, "host", "never closes it"),
    ({"host": "[192.0.2.1]:5060"}, "host", "is not an IPv6 address"),
    ({"host": ""}, "host", "a register trunk needs the provider's host"),
    ({"username": ""}, "username", "a register trunk needs a username"),
    ({"username": "a b"}, "username", "' ' is not allowed in a SIP user name"),
    ({"username": "me@x"}, "username", "'@' is not allowed"),
    ({"password": ""}, "password", "a register trunk needs a password"),
    ({"password": "x" * 257}, "password", "must have 1 to 256 characters"),
    ({"codecs": []}, "codecs", "at least one codec is required"),
    ({"codecs": ["PCMU", "G722"]}, "codecs", "[1] 'G722' is not one of PCMU, PCMA, G729, OPUS"),
    ({"codecs": ["PCMU", "pcmu"]}, "codecs", "[1] PCMU is listed twice"),
    ({"dtmf_mode": "sipinfo"}, "dtmf_mode", "'sipinfo' is not one of rfc2833, info, inband"),
    ({"max_registrations": 3}, "max_registrations", "only account trunks hold more than one"),
    ({"peer_addresses": ["192.0.2.1"]}, "peer_addresses", "only peer trunks take peer_addresses"),
    ({"description": "x" * 1025}, "description", "at most 1024 characters"),
    ({"enabled": "yes"}, "enabled", "must be true or false"),
    ({"from_domain": "-bad-.com"}, "from_domain", "is not a valid domain name"),
    ({"outbound_proxy": "bad proxy"}, "outbound_proxy", "is not a valid domain name"),
    ({"outbound_proxy": "sbc.example.com:0"}, "outbound_proxy", "must be a number from 1"),
    ({"outbound_proxy": "sip:sbc.example.com;transport=tcp"}, "outbound_proxy",
     "must be host[:port]"),
    ({"outbound_proxy": "u@sbc.example.com"}, "outbound_proxy", "must be host[:port]"),
])
def test_register_rules(changes: dict[str, Any], field: str, message: str) -> None:
    assert message in violations(**changes)[field]


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"peer_addresses": []}, "peer_addresses", "a peer trunk needs at least one provider address"),
    ({"peer_addresses": ["sip.example.com"]}, "peer_addresses",
     "[0] 'sip.example.com' is not an IP address"),
    ({"peer_addresses": ["192.0.2.1", "192.0.2.1:5060"]}, "peer_addresses",
     "[1] 192.0.2.1:5060 is listed twice"),
    ({"username": "u"}, "username", "peer trunks take no credentials"),
    ({"password": "p"}, "password", "peer trunks take no credentials"),
])
def test_peer_rules(changes: dict[str, Any], field: str, message: str) -> None:
    assert message in violations(type="peer", **changes)[field]


def test_account_needs_its_own_auth_id_and_takes_up_to_100_registrations() -> None:
    assert "an account trunk needs its own auth_id" in violations(type="account")["auth_id"]
    assert "must be 1 to 100, got 101" in violations(
        type="account", auth_id="acct", max_registrations=101)["max_registrations"]
    settings, _ = validate_trunk({**REGISTER, "type": "account", "auth_id": "acct",
                                  "max_registrations": 100})
    assert settings["max_registrations"] == 100


@pytest.mark.parametrize(("nat", "field", "message"), [
    ({"external_ip": "1.2.3"}, "nat.external_ip", "'1.2.3' is not an IPv4 or IPv6 address"),
    ({"local_networks": ["10.1.2.3/8"]}, "nat.local_networks",
     "'10.1.2.3/8' has host bits set; did you mean 10.0.0.0/8?"),
    ({"local_networks": ["10.0.0.0/33"]}, "nat.local_networks", "is not a network in CIDR form"),
    ({"stun_server": "stun.example.com:0"}, "nat.stun_server", "port '0' must be a number"),
])
def test_nat_rules(nat: dict[str, Any], field: str, message: str) -> None:
    assert message in violations(nat=nat)[field]


def test_nat_without_external_ip_or_stun_learns_from_rport_with_a_warning() -> None:
    settings, warnings = validate_trunk({**REGISTER, "nat": {"enabled": True}})
    assert settings["nat"]["enabled"] is True
    assert any("learns its public address from the provider's answers" in w
               for w in warnings)


@pytest.mark.parametrize(("limits", "field", "message"), [
    ({"max_concurrent_calls": 10000}, "call_limits.max_concurrent_calls", "must be 0 to 9999"),
    ({"max_concurrent_calls": -1}, "call_limits.max_concurrent_calls", "must be 0 to 9999"),
    ({"max_concurrent_calls": 5, "max_inbound_calls": 6}, "call_limits.max_inbound_calls",
     "6 exceeds max_concurrent_calls (5)"),
    ({"max_concurrent_calls": 5, "max_outbound_calls": 9}, "call_limits.max_outbound_calls",
     "9 exceeds max_concurrent_calls (5)"),
])
def test_call_limit_rules(limits: dict[str, Any], field: str, message: str) -> None:
    assert message in violations(call_limits=limits)[field]


def test_every_mistake_is_reported_at_once() -> None:
    found = violations(name="", host="bad host", codecs=[])
    assert set(found) == {"name", "host", "codecs"}


def test_canonical_forms() -> None:
    settings, warnings = validate_trunk({
        **REGISTER, "host": "SIP.Example.COM:5080", "codecs": ["pcmu", "g.729", "Opus"],
        "call_limits": {"max_concurrent_calls": 9999, "max_outbound_calls": 5},
        "nat": {"enabled": True, "stun_server": "stun.example.com",
                "local_networks": ["192.168.0.0/16"]},
    })
    assert settings["host"] == "sip.example.com:5080"
    assert settings["codecs"] == ["PCMU", "G729", "OPUS"]
    assert settings["call_limits"] == {"max_concurrent_calls": None, "max_inbound_calls": None,
                                       "max_outbound_calls": 5}
    assert settings["nat"]["stun_server"] == "stun.example.com:3478"
    assert warnings == []


@pytest.mark.parametrize(("host", "canonical"), [
    ("192.0.2.10", "192.0.2.10"), ("192.0.2.10:5080", "192.0.2.10:5080"),
    ("[::1]:5070", "[::1]:5070"), ("2001:db8::1", "[2001:db8::1]"), ("localhost", "localhost"),
])
def test_hosts_accepted(host: str, canonical: str) -> None:
    assert validate_trunk({**REGISTER, "host": host})[0]["host"] == canonical


def test_short_password_is_accepted_with_a_warning() -> None:
    settings, warnings = validate_trunk({**REGISTER, "password": "short"})
    assert settings["password"] == "short"
    assert warnings == [
        "password: shorter than 16 characters; accepted, but ask the provider for a longer one "
        "if you can"
    ]


def test_tls_warnings() -> None:
    _, warnings = validate_trunk({**REGISTER, "transport": "tls", "host": "192.0.2.1:5060"})
    assert any("cannot verify the provider's certificate" in w for w in warnings)
    assert any("usually listen for TLS on 5061" in w for w in warnings)


def test_peer_host_defaults_to_first_address() -> None:
    settings, _ = validate_trunk({**PEER, "peer_addresses": ["192.0.2.7:5080", "192.0.2.8"]})
    assert settings["host"] == "192.0.2.7:5080"


@pytest.mark.parametrize(("written", "stored"), [
    ("", ""), ("sbc.example.com", "sbc.example.com"),
    ("sip:sbc.example.com:5070;lr", "sbc.example.com:5070"), ("[2001:db8::1]:5060",
                                                             "[2001:db8::1]:5060"),
])
def test_outbound_proxy_is_kept_as_host_and_port(written: str, stored: str) -> None:
    settings, _ = validate_trunk({**REGISTER, "outbound_proxy": written})
    assert settings["outbound_proxy"] == stored
