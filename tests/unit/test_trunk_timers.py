"""A trunk's own timers and its TLS client certificate: validation, events, the wire (the
key sealed), the history and the read API (the key never shown), the backup document."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from domain import commands
from domain.application import TrunkplaneApp
from domain.errors import ValidationError
from domain.model import CommandMeta
from domain.trunk import Trunk
from domain.trunk_settings import validate_trunk
from infra.backup.config_document import export_document, read_document
from infra.grpc_api.convert import trunk_message, trunk_settings
from infra.messaging.codec import MAGIC, AvroCodec
from infra.messaging.schemas import released, schema_fingerprint
from infra.security.sealing import PassphraseSealer, WireCipher
from projections.history import diff
from sipagent.settings import SipSettings, TrunkTimers
from tests.certificates import Authority

META = CommandMeta(actor="alice", reason="r", request_id="")
TLS: dict[str, Any] = {
    "name": "secure", "type": "register", "host": "sip.example.com:5061", "transport": "tls",
    "username": "1001", "password": "a-long-enough-password", "codecs": ["PCMU"],
}
CA = Authority()
CLIENT = CA.issue("pbx.example.com")
OTHER = CA.issue("someone-else")


def violations(**changes: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        validate_trunk({**TLS, **changes})
    return {v.field: v.description for v in caught.value.violations}


def test_timers_default_to_the_agent_and_qualify_on() -> None:
    settings, _ = validate_trunk(TLS)
    assert settings["timers"] == {
        "registration_expiry": None, "backoff_base": None, "backoff_cap": None,
        "qualify": True, "options_interval": None, "down_after": None, "up_after": None,
        "ok_codes": [], "failover_after": None}


def test_failover_after_is_the_trunk_s_else_the_agent_s() -> None:
    agent = SipSettings(failover_after=4.0)
    assert TrunkTimers.of(agent, {"timers": {"failover_after": None}}).failover_after == 4.0
    assert TrunkTimers.of(agent, {}).failover_after == 4.0  # stored before the field
    settings, _ = validate_trunk({**TLS, "timers": {"failover_after": 2}})
    assert TrunkTimers.of(agent, settings).failover_after == 2.0


def test_timers_are_canonical() -> None:
    settings, _ = validate_trunk({**TLS, "timers": {
        "registration_expiry": 600, "options_interval": 15, "ok_codes": ["2XX", 404],
        "qualify": False}})
    assert settings["timers"]["ok_codes"] == ["2xx", "404"]
    assert (settings["timers"]["registration_expiry"], settings["timers"]["qualify"]) == (
        600, False)


@pytest.mark.parametrize(("timers", "field", "message"), [
    ({"registration_expiry": 5}, "timers.registration_expiry", "must be 10 to 86400"),
    ({"backoff_base": 0}, "timers.backoff_base", "must be 1 to 3600"),
    ({"backoff_base": 60, "backoff_cap": 30}, "timers.backoff_cap",
     "30 is below backoff_base (60)"),
    ({"options_interval": "30"}, "timers.options_interval", "must be a whole number"),
    ({"down_after": 11}, "timers.down_after", "must be 1 to 10"),
    ({"up_after": 0}, "timers.up_after", "must be 1 to 10"),
    ({"failover_after": 0}, "timers.failover_after", "must be 1 to 32"),
    ({"failover_after": 33}, "timers.failover_after", "must be 1 to 32"),
    ({"qualify": "yes"}, "timers.qualify", "must be true or false"),
    ({"ok_codes": ["9xx"]}, "timers.ok_codes", "'9xx' is neither a SIP code"),
    ({"ok_codes": ["200", "200"]}, "timers.ok_codes", "200 is listed twice"),
    ({"retries": 3}, "timers.retries", "unknown timer"),
])
def test_timer_rules(timers: dict[str, Any], field: str, message: str) -> None:
    assert message in violations(timers=timers)[field]


def test_peers_are_always_qualified() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_trunk({"name": "p", "type": "peer", "peer_addresses": ["192.0.2.1"],
                        "codecs": ["PCMU"], "timers": {"qualify": False}})
    assert "always watched" in str(caught.value)


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"client_certificate": CLIENT.certificate}, "client_key", "needs its private key"),
    ({"client_key": CLIENT.key}, "client_certificate", "needs its client certificate"),
    ({"client_certificate": CLIENT.certificate, "client_key": OTHER.key}, "client_key",
     "the key does not match the certificate"),
    ({"client_certificate": "not pem", "client_key": CLIENT.key}, "client_certificate",
     "must be PEM"),
    ({"client_certificate": CLIENT.certificate, "client_key": CLIENT.certificate},
     "client_key", "must be one PEM private key"),
    ({"client_certificate": CLIENT.certificate, "client_key": CLIENT.key, "transport": "udp",
      "host": "sip.example.com"}, "client_certificate", "set transport tls"),
])
def test_client_certificate_rules(changes: dict[str, Any], field: str, message: str) -> None:
    assert message in violations(**changes)[field]


def test_an_expired_certificate_is_accepted_with_a_warning() -> None:
    expired = CA.issue("old", expired=True)
    _, warnings = validate_trunk({**TLS, "client_certificate": expired.certificate,
                                  "client_key": expired.key})
    assert any(w.startswith("client_certificate: expired on") for w in warnings)



def _events(app: TrunkplaneApp) -> list[Any]:
    return [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(0, 100)]


def test_changes_are_events_and_the_key_is_sealed_on_the_wire(app: TrunkplaneApp) -> None:
    app.execute(partial(commands.create_trunk, tenant="acme", template="", meta=META,
                        raw=TLS)).unwrap()
    app.execute(partial(commands.update_trunk, tenant="acme", ref="secure", etag="", meta=META,
                        patch={"timers": {"options_interval": 10,
                                          "failover_after": 3}})).unwrap()
    app.execute(partial(commands.update_trunk, tenant="acme", ref="secure", etag="", meta=META,
                        patch={"client_certificate": CLIENT.certificate,
                               "client_key": CLIENT.key})).unwrap()
    events = [e for e in _events(app) if isinstance(e, Trunk.Event)]
    timers = next(e for e in events if isinstance(e, Trunk.TimersChanged))
    assert timers.timers["options_interval"] == 10 and timers.timers["qualify"] is True
    assert timers.timers["failover_after"] == 3
    certificate = next(e for e in events if isinstance(e, Trunk.ClientCertificateChanged))
    codec = AvroCodec(WireCipher("w1:" + WireCipher.new_key()))
    payload = codec.encode_event(certificate, 9, "acme")
    secret_line = CLIENT.key.splitlines()[1].encode()
    assert secret_line not in payload and b"BEGIN CERTIFICATE" in payload
    assert codec.decode(payload).value == certificate
    assert codec.decode(codec.encode_event(timers, 8, "acme")).value == timers
    changes = diff({"client_key": ""}, {"client_key": CLIENT.key})
    assert [(c.field, c.new_value) for c in changes] == [("client_key", "(set)")]


def test_a_trunk_created_before_the_fields_reads_with_their_defaults() -> None:
    """A Created payload of the first release (no timers, no certificate) decodes with the
    newest reader, and the read API shows the defaults."""
    name = "domain.trunk.Trunk.Created"
    v1 = released()[name][0]
    settings = {"name": "old", "type": "register", "host": "sip.example.com",
                "transport": "udp", "username": "1001", "password": None, "auth_id": "",
                "max_registrations": 1, "from_user": "", "from_domain": "",
                "peer_addresses": [], "codecs": ["PCMU"], "dtmf_mode": "rfc2833",
                "nat": {"enabled": False, "external_ip": "", "local_networks": [],
                        "stun_server": ""},
                "call_limits": {"max_concurrent_calls": None, "max_inbound_calls": None,
                                "max_outbound_calls": None},
                "enabled": True, "description": ""}
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(v1), {
        "position": 1, "tenant": "acme", "originator_id": "00000000-0000-4000-8000-000000000001",
        "originator_version": 1, "timestamp": datetime(2026, 1, 1, tzinfo=UTC), "actor": "a",
        "reason": "", "request_id": "", "settings": settings})
    decoded = AvroCodec(None).decode(MAGIC + schema_fingerprint(v1) + body.getvalue())
    got = decoded.value.settings
    assert got["timers"]["qualify"] is True and got["client_key"] == ""
    doc = {"id": "t", "tenant": "acme", "settings": {**settings, "password": ""},
           "version": 1, "create_time": "2026-01-01T00:00:00+00:00",
           "update_time": "2026-01-01T00:00:00+00:00"}
    message = trunk_message(doc)
    assert message.timers.qualify and not message.client_key_set


def test_the_read_api_shows_the_certificate_never_the_key() -> None:
    settings, _ = validate_trunk({**TLS, "client_certificate": CLIENT.certificate,
                                  "client_key": CLIENT.key,
                                  "timers": {"down_after": 3}})
    doc = {"id": "t", "tenant": "acme", "settings": settings, "version": 1,
           "create_time": "2026-01-01T00:00:00+00:00",
           "update_time": "2026-01-01T00:00:00+00:00"}
    message = trunk_message(doc)
    assert message.client_key == "" and message.client_key_set
    assert message.client_certificate_subject == "commonName=pbx.example.com"
    assert message.HasField("client_certificate_expires")
    assert CLIENT.key.splitlines()[1] not in str(message)
    back = trunk_settings(message)
    assert back["timers"] == settings["timers"] and back["client_key"] == ""


def test_the_backup_document_seals_the_key(app: TrunkplaneApp) -> None:
    app.execute(partial(commands.create_trunk, tenant="acme", template="", meta=META, raw={
        **TLS, "client_certificate": CLIENT.certificate, "client_key": CLIENT.key,
        "timers": {"registration_expiry": 900}})).unwrap()
    plain = json.dumps(export_document(app, ["acme"], None))
    assert CLIENT.key.splitlines()[1] not in plain and "BEGIN CERTIFICATE" in plain
    sealer = PassphraseSealer("a passphrase")
    sealed = json.dumps(export_document(app, ["acme"], sealer))
    assert CLIENT.key.splitlines()[1] not in sealed and "client_key_sealed" in sealed
    trunk = read_document(sealed, "a passphrase")["acme"].trunks[0]
    assert trunk["client_key"] == CLIENT.key and trunk["timers"]["registration_expiry"] == 900


def test_doctor_explains_an_expired_certificate_and_a_key_that_does_not_match() -> None:
    from infra.ops.doctor import _agent_view, _client_certificate

    expired = CA.issue("old", expired=True)
    found = list(_client_certificate("secure", {"client_certificate": expired.certificate,
                                                "client_key": expired.key}))
    assert found[0].level == "fail" and "expired on" in found[0].text
    assert "--client-cert" in found[0].fix
    found = list(_client_certificate("secure", {"client_certificate": CLIENT.certificate,
                                                "client_key": OTHER.key}))
    assert found[0].level == "fail" and "does not match" in found[0].text
    assert list(_client_certificate("secure", {})) == []
    soon = list(_client_certificate("secure", {"client_certificate": CLIENT.certificate,
                                               "client_key": CLIENT.key}))  # 2 days left
    assert soon[0].level == "warn" and "pbx.example.com expires on" in soon[0].text
    answered = {"state": "unreachable", "sip_code": 404, "reason": "OPTIONS answered 404 Nope",
                "agent_id": "a", "since": "2026-01-01T00:00:00+00:00"}
    finding = next(iter(_agent_view("secure", TLS, answered)))
    assert finding.level == "fail" and "--ok-code 404" in finding.fix
    peer = {**answered, "sip_code": 403, "reason": "Forbidden"}  # a peer: the provider's words
    assert "--ok-code 403" in next(iter(_agent_view("carrier", TLS, peer))).fix


def test_doctor_explains_servers_that_all_stayed_silent() -> None:
    from infra.ops.doctor import _agent_view
    from sipagent.engine import none_answered
    from sipagent.sip.locate import Target
    from sipagent.sip.transport import Destination, TransportError

    targets = [Target(Destination("udp", "192.0.2.1", 5060), 10, "sip1.example.com"),
               Target(Destination("udp", "192.0.2.2", 5060), 20, "sip2.example.com")]
    last = TransportError("no answer from udp:192.0.2.2:5060 within 32 s")
    reason = str(none_answered(targets, last))
    assert "192.0.2.1" in reason and str(last) in reason
    assert none_answered(targets[:1], last) is last  # one target: its own failure
    doc = {"state": "unreachable", "sip_code": 0, "reason": reason, "agent_id": "a",
           "since": "2026-01-01T00:00:00+00:00"}
    finding = next(iter(_agent_view("secure", {**TLS, "timers": {"failover_after": 3}}, doc)))
    assert finding.level == "fail" and "none answered" in finding.fix
    assert "3 s (timers.failover_after)" in finding.fix
    assert "trunk update secure --failover-after" in finding.fix
    unset = next(iter(_agent_view("secure", TLS, doc)))
    assert "TRUNKPLANE_SIP_FAILOVER_AFTER" in unset.fix


def test_cli_flags_set_the_timers_and_read_the_pem_files(tmp_path: Any) -> None:
    import argparse

    from infra.cli.flags import apply_flags
    from infra.cli.trunks import SETTINGS, register
    from trunkplane.v1 import trunk_pb2

    (tmp_path / "c.pem").write_text(CLIENT.certificate)
    (tmp_path / "k.pem").write_text(CLIENT.key)
    parser = argparse.ArgumentParser()
    register(parser)
    args = parser.parse_args(["update", "voco", "--options-interval", "10", "--qualify", "off",
                              "--ok-code", "2xx", "--ok-code", "404", "--client-cert",
                              str(tmp_path / "c.pem"), "--client-key", str(tmp_path / "k.pem")])
    changes = trunk_pb2.Trunk()
    paths = apply_flags(changes, args, SETTINGS)
    assert sorted(paths) == ["client_certificate", "client_key", "timers.ok_codes",
                             "timers.options_interval", "timers.qualify"]
    settings = trunk_settings(changes)
    assert settings["timers"]["options_interval"] == 10 and not settings["timers"]["qualify"]
    assert settings["timers"]["ok_codes"] == ["2xx", "404"]
    assert (settings["client_certificate"], settings["client_key"]) == (
        CLIENT.certificate, CLIENT.key)


def test_the_clear_key_for_ssl_lives_in_memory_not_on_disk() -> None:
    """ssl loads a key from a path alone: on Linux the path is an anonymous memory file, so
    a process killed while loading leaves no clear key behind in /tmp."""
    from domain.certificates import pem_files

    with pem_files("CERT", "KEY") as (certificate, key):
        assert certificate.startswith("/proc/self/fd/") and key.startswith("/proc/self/fd/")
        with open(key) as text:
            assert text.read() == "KEY"
