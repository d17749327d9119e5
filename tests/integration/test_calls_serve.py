"""The B2BUA inside `serve`: the tenant's PBX access set over gRPC, a trunk and a route,
a call from a (scripted) PBX to serve's PBX face reaches the provider, and its record comes
back from ListCalls. And doctor checks both SIP faces."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from domain.status import TrunkState
from infra.config.settings import Settings
from infra.ops.doctor import _faces
from sipagent.settings import CallSettings, SipSettings
from tests.brokers import free_port
from tests.calls_rig import Rig, wait_for
from tests.conftest import Api, settings_for
from tests.integration.helpers import ALICE, create_route, create_trunk
from tests.sipua import ThreadedUA
from trunkplane.v1 import common_pb2, route_pb2, trunk_pb2

SIP = SipSettings(agent_id="serve-agent", listen_port=0, tcp_port=0, t1=0.1,
                  options_interval=0.5, options_timeout=0.5, startup_spread=0.0,
                  destinations=("127.0.0.0/8",))
CALLS = CallSettings(pbx_port=0, t1=0.1, provider_timeout=1.5, probe_interval=2.0)


@pytest.fixture
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    settings = replace(settings_for("sqlite", tmp_path, request), sip=SIP, calls=CALLS)
    client = Api(settings)
    yield client
    client.close()


def test_serve_carries_a_call_and_lists_its_record(api: Api) -> None:
    far, phone = ThreadedUA(), ThreadedUA()
    try:
        trunk = create_trunk(api, "carrier", type="peer", host="", username="", password="",
                             peer_addresses=[f"127.0.0.1:{far.port}"]).trunk.id
        create_route(api, "us", [trunk])
        request = route_pb2.UpdatePbxAccessRequest(
            pbx=route_pb2.PbxAccess(source_cidrs=["127.0.0.1"]),
            options=common_pb2.CommandOptions(reason="calls"))
        api.routes.UpdatePbxAccess(request, metadata=api.as_(ALICE))
        agent = api.plane.agent
        assert agent is not None and agent.b2bua is not None
        sip = agent.sip
        assert sip is not None
        wait_for(lambda: agent.runner.state.pbx_for_source("127.0.0.1") is not None and
                 sip.live_state(trunk) == TrunkState.OK, 15, "the PBX and the trunk")
        assert agent.b2bua.pbx is not None
        pbx_face = ("127.0.0.1", agent.b2bua.pbx.transport.listen_port)
        outcome = phone.run(phone.ua.call(pbx_face, "2125551234", caller="201"))
        assert outcome.code == 200
        assert far.ua.received("INVITE")[0].uri.startswith("sip:2125551234@127.0.0.1:")
        assert phone.run(phone.ua.bye(pbx_face, outcome)).status == 200
        deadline = time.monotonic() + 10
        while not (calls := list(api.trunks.ListCalls(trunk_pb2.ListCallsRequest()).calls)):
            assert time.monotonic() < deadline, "no call record listed"
            time.sleep(0.1)
        assert [(c.direction, c.final_code, c.hangup_by, c.number_sent) for c in calls] == [
            ("outbound", 200, "pbx", "2125551234")]
    finally:
        far.close()
        phone.close()


def test_doctor_checks_both_faces() -> None:
    provider, pbx = free_port(), free_port()
    env = {"TRUNKPLANE_SIP_LISTEN": f"127.0.0.1:{provider}",
           "TRUNKPLANE_PBX_LISTEN": f"127.0.0.1:{pbx}"}
    settings = Settings.from_env(env)
    assert settings.calls is not None and settings.sip is not None
    assert (settings.sip.tcp_port, settings.calls.pbx_tcp_port) == (provider, pbx)
    down = list(_faces(settings))
    assert [(f.subject, f.level) for f in down] == [("provider face", "fail"),
                                                   ("PBX face", "fail")]
    assert "5060" not in down[0].fix and str(provider) in down[0].fix
    rig = Rig(sip={"listen_port": provider, "tcp_port": provider}, pbx_port=pbx,
              pbx_tcp_port=pbx)
    try:
        up = list(_faces(settings))
        assert [(f.subject, f.level) for f in up] == [("provider face", "ok"),
                                                     ("PBX face", "ok")], up
        assert "answers OPTIONS" in up[1].text and f"tcp:127.0.0.1:{pbx} accepts" in up[1].text
    finally:
        rig.close()
    off = Settings.from_env({**env, "TRUNKPLANE_PBX_LISTEN": "off"})
    assert off.calls is None and Settings.from_env({"TRUNKPLANE_SIP": "off"}).calls is None
