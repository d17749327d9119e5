"""TLS client certificates towards a provider, against a real Kamailio whose TLS listener
requires one signed by its CA: registration works with the trunk's certificate and is
refused without it or with one of another CA; a trunk's certificate is its own (another
trunk to the same provider does not present it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.status import StatusObservation, TrunkState
from domain.trunk_settings import validate_trunk
from infra.ops.doctor import Finding, _agent_view
from sipagent.engine import SipAgent
from tests.certificates import Authority
from tests.integration.test_sip_agent import PASSWORD, fast
from tests.kamailio import Kamailio
from tests.status_recorder import Recorder

CA = Authority("provider's client CA")


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[Kamailio]:
    ca_file = tmp_path / "client-ca.pem"
    ca_file.write_text(CA.pem)
    with Kamailio(tmp_path / "k", {"1001": PASSWORD, "2002": PASSWORD},
                  client_ca=ca_file) as running:
        yield running


@pytest.fixture
def agent(provider: Kamailio) -> Iterator[tuple[SipAgent, Recorder]]:
    recorder = Recorder()
    engine = SipAgent(fast(tls_ca=str(provider.cert)), recorder)
    engine.start()
    yield engine, recorder
    engine.stop()


def tls_trunk(provider: Kamailio, user: str = "1001", **fields: Any) -> dict[str, Any]:
    """Settings as the control plane stores them (validated: canonical PEM)."""
    settings, _ = validate_trunk({
        "name": f"t{user}", "type": "register", "host": f"127.0.0.1:{provider.tls}",
        "transport": "tls", "username": user, "password": PASSWORD, "codecs": ["PCMU"],
        "timers": {"qualify": False}, **fields})
    return settings


def refused(o: StatusObservation) -> bool:
    return o.state == TrunkState.UNREACHABLE


def doctor_says(name: str, settings: dict[str, Any], o: StatusObservation) -> Finding:
    """What doctor makes of the agent's report (as the status view stores it)."""
    doc = {"state": o.state.value, "sip_code": o.sip_code, "reason": o.reason,
           "agent_id": o.agent_id, "since": o.since.isoformat()}
    return next(iter(_agent_view(name, settings, doc)))


def test_registration_presents_the_trunks_certificate(
        provider: Kamailio, agent: tuple[SipAgent, Recorder]) -> None:
    engine, recorder = agent
    mine = CA.issue("pbx.example.com")
    engine.update("acme", "with", tls_trunk(provider, client_certificate=mine.certificate,
                                            client_key=mine.key))
    up = recorder.wait("with", lambda o: o.state == TrunkState.REGISTERED)
    assert ";transport=tls" in up.contacts[0].uri
    assert provider.contacts("1001") == [up.contacts[0].uri]
    # another trunk to the same provider, without a certificate: its own connection, refused
    without = tls_trunk(provider, "2002")
    engine.update("acme", "without", without)
    down = recorder.wait("without", refused)
    assert "certificate" in down.reason.lower(), down.reason
    finding = doctor_says("t2002", without, down)
    assert finding.level == "fail" and "refused the TLS client certificate" in finding.text
    assert "requires a TLS client certificate" in finding.fix and "--client-cert" in finding.fix
    assert provider.contacts("2002") == []


def test_a_certificate_of_another_ca_is_refused_and_a_new_one_taken_at_once(
        provider: Kamailio, agent: tuple[SipAgent, Recorder]) -> None:
    engine, recorder = agent
    stranger = Authority("someone else").issue("pbx.example.com")
    settings = tls_trunk(provider, client_certificate=stranger.certificate,
                         client_key=stranger.key)
    engine.update("acme", "t", settings)
    down = recorder.wait("t", refused)
    finding = doctor_says("t", settings, down)
    assert finding.level == "fail", down.reason
    assert "does not accept this certificate" in finding.fix
    good = CA.issue("pbx.example.com")
    engine.update("acme", "t", tls_trunk(provider, client_certificate=good.certificate,
                                         client_key=good.key))
    recorder.wait("t", lambda o: o.state == TrunkState.REGISTERED)


def test_a_call_over_the_trunk_presents_its_certificate_too(tmp_path: Path) -> None:
    """The B2BUA's INVITE goes over the trunk's own TLS connection: Kamailio (calls on,
    client certificates required) relays it to a baresip phone registered over UDP."""
    from domain.calls import PbxAccess
    from tests.baresip import Baresip
    from tests.calls_rig import Rig, wait_for

    ca_file = tmp_path / "client-ca.pem"
    ca_file.write_text(CA.pem)
    mine = CA.issue("pbx.example.com")
    with Kamailio(tmp_path / "k", {"1001": PASSWORD, "3003": PASSWORD}, calls=True,
                  client_ca=ca_file) as kamailio:
        rig = Rig(access=PbxAccess("acme", ("127.0.0.0/8",)),
                  sip={"tls_ca": str(kamailio.cert)})
        far = Baresip(tmp_path, f"<sip:3003@127.0.0.1:{kamailio.udp}>;auth_pass={PASSWORD};"
                      "regint=60", "far")
        pbx = Baresip(tmp_path, "<sip:201@127.0.0.1>;regint=0", "pbx")
        try:
            wait_for(lambda: bool(kamailio.contacts("3003")), 15, "the far end registered")
            trunk = rig.trunk("secure", type="register", host=f"127.0.0.1:{kamailio.tls}",
                              transport="tls", username="1001", password=PASSWORD,
                              client_certificate=mine.certificate, client_key=mine.key)
            wait_for(lambda: rig.engine.live_state(trunk) == TrunkState.REGISTERED, 15,
                     "the trunk registered")
            rig.route("all", [trunk])
            pbx.dial(f"sip:3003@127.0.0.1:{rig.pbx_address[1]}")
            far.wait_event("CALL_INCOMING")
            far.accept()
            pbx.wait_event("CALL_ESTABLISHED")
            pbx.hangup()
            # the ACK and the BYE went over the trunk's own connection too: without its
            # certificate Kamailio refused them, and the far end hung on for 32 s
            far.wait_event("CALL_CLOSED", 10)
            wait_for(lambda: rig.channels(trunk) == (0, 0), 10, "the channel freed")
            record = rig.records.records[-1]
            assert (record.final_code, record.trunk_id) == (200, trunk)
        finally:
            pbx.stop()
            far.stop()
            rig.close()
