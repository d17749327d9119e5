"""A trunk's outbound proxy (RFC 3261 loose routing) against Kamailio acting as the proxy:
registrations and calls go to the proxy with a Route naming it (`;lr`), and the proxy
takes them on to the provider (another Kamailio, the registrar and call proxy). The
proxy refuses any request that does not carry its Route, so a pass proves the Route."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.calls import PbxAccess
from domain.status import TrunkState
from sipagent.engine import SipAgent
from tests.baresip import Baresip
from tests.calls_rig import Rig, wait_for
from tests.integration.test_sip_agent import PASSWORD, fast, registered
from tests.kamailio import Kamailio
from tests.status_recorder import Recorder


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[Kamailio]:
    with Kamailio(tmp_path / "provider", {"1001": PASSWORD, "3003": PASSWORD},
                  calls=True) as running:
        yield running


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Kamailio]:
    with Kamailio(tmp_path / "proxy", {}, proxy=True) as running:
        yield running


def via_proxy(provider: Kamailio, proxy: Kamailio, **fields: Any) -> dict[str, Any]:
    return {"type": "register", "host": f"127.0.0.1:{provider.udp}", "transport": "udp",
            "username": "1001", "password": PASSWORD, "enabled": True,
            "outbound_proxy": f"127.0.0.1:{proxy.udp}", **fields}


def test_registration_goes_through_the_outbound_proxy(provider: Kamailio,
                                                      proxy: Kamailio) -> None:
    recorder = Recorder()
    engine = SipAgent(fast(), recorder)
    engine.start()
    try:
        engine.update("acme", "t1", via_proxy(provider, proxy))
        first = recorder.wait("t1", registered)
        assert provider.contacts("1001") == [first.contacts[0].uri]
        route = f"route=<sip:127.0.0.1:{proxy.udp};lr>"
        registers = [line for line in proxy.proxied() if line.startswith("REGISTER")]
        assert registers, proxy.log.read_text()[-2000:]
        assert all(line == f"REGISTER sip:127.0.0.1:{provider.udp} {route}"
                   for line in registers), registers
        engine.update("acme", "t1", None)  # the unREGISTER takes the same way
        recorder.wait("t1", lambda o: o.state == TrunkState.UNREGISTERED)
        assert provider.contacts("1001") == []
        assert len([line for line in proxy.proxied() if line.startswith("REGISTER")]) > len(
            registers)
    finally:
        engine.stop()


def test_a_call_goes_through_the_outbound_proxy(provider: Kamailio, proxy: Kamailio,
                                                tmp_path: Path) -> None:
    rig = Rig(access=PbxAccess("acme", ("127.0.0.0/8",)))
    far = Baresip(tmp_path, f"<sip:3003@127.0.0.1:{provider.udp}>;auth_pass={PASSWORD};"
                  "regint=60", "far")
    pbx = Baresip(tmp_path, "<sip:201@127.0.0.1>;regint=0", "pbx")
    try:
        wait_for(lambda: bool(provider.contacts("3003")), 15, "the far end registered")
        fields = via_proxy(provider, proxy)
        del fields["enabled"]
        trunk = rig.trunk("carrier", **fields)
        wait_for(lambda: rig.engine.live_state(trunk) == TrunkState.REGISTERED, 15,
                 "the trunk registered")
        rig.route("all", [trunk])
        pbx.dial(f"sip:3003@127.0.0.1:{rig.pbx_address[1]}")
        far.wait_event("CALL_INCOMING")
        far.accept()
        pbx.wait_event("CALL_ESTABLISHED")
        pbx.hangup()
        wait_for(lambda: rig.channels(trunk) == (0, 0), 10, "the channel freed")
        invites = [line for line in proxy.proxied() if line.startswith("INVITE")]
        # the first INVITE and the one answering the provider's 407, both routed
        assert len(invites) == 2, invites
        assert all(f"route=<sip:127.0.0.1:{proxy.udp};lr>" in line for line in invites)
        assert any(line.startswith("BYE") for line in proxy.proxied())  # record-routed
        assert rig.records.records[-1].final_code == 200
    finally:
        pbx.stop()
        far.stop()
        rig.close()


def test_options_go_through_the_outbound_proxy(provider: Kamailio, proxy: Kamailio) -> None:
    """A peer's OPTIONS, and a register trunk's qualify, go to the proxy with a Route
    naming it and the provider's address as the Request-URI (the proxy refuses them
    otherwise: 403, a miss)."""
    recorder = Recorder()
    engine = SipAgent(fast(), recorder)
    engine.start()
    try:
        address = f"127.0.0.1:{provider.udp}"
        route = f"route=<sip:127.0.0.1:{proxy.udp};lr>"
        engine.update("acme", "p1", {"type": "peer", "host": "", "transport": "udp",
                                     "peer_addresses": [address], "enabled": True,
                                     "outbound_proxy": f"127.0.0.1:{proxy.udp}"})
        ok = recorder.wait("p1", lambda o: o.state == TrunkState.OK)
        assert ok.target == f"udp:127.0.0.1:{proxy.udp}"
        engine.update("acme", "t1", via_proxy(provider, proxy))
        recorder.wait("t1", registered)
        wait_for(lambda: len([line for line in proxy.proxied()
                              if line.startswith("OPTIONS")]) >= 4, 15,
                 "OPTIONS of both trunks at the proxy")
        options = [line for line in proxy.proxied() if line.startswith("OPTIONS")]
        assert all(line == f"OPTIONS sip:{address} {route}" for line in options), options
        qualified = recorder.wait("t1", lambda o: registered(o) and bool(o.peers) and
                                  o.peers[0].up)
        assert qualified.state == TrunkState.REGISTERED
        assert recorder.wait("p1", lambda o: True).state == TrunkState.OK
    finally:
        engine.stop()
