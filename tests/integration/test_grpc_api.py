"""The gRPC API against a real server, once on SQLite and once on PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import Api
from tests.integration.helpers import (
    PASSWORD,
    create_route,
    create_trunk,
    precondition_subjects,
    update_trunk,
    violations,
)
from trunkplane.v1 import common_pb2, route_pb2, trunk_pb2


def test_create_and_get(api: Api) -> None:
    created = create_trunk(api, "Voco", password="short", call_limits=trunk_pb2.CallLimits(
        max_concurrent_calls=10, max_outbound_calls=8))
    assert created.warnings[0].startswith("password: shorter than 16 characters")
    trunk = api.trunks.GetTrunk(trunk_pb2.GetTrunkRequest(trunk="voco"))
    assert (trunk.id, trunk.name, trunk.version, trunk.etag) == (
        created.trunk.id, "Voco", 1, 'W/"1"')
    assert trunk.password == "" and trunk.password_set
    assert trunk.call_limits.max_outbound_calls == 8
    assert not trunk.call_limits.HasField("max_inbound_calls")
    assert created.position > 0


def test_list_pages_and_filters(api: Api) -> None:
    names = [f"trunk-{i}" for i in (5, 3, 1, 4, 2, 6, 0)]
    for name in names:
        create_trunk(api, name)
    create_trunk(api, "zz-peer", type="peer", username="", password="",
                 peer_addresses=["192.0.2.10"])
    update_trunk(api, "trunk-0", trunk_pb2.Trunk(enabled=False), ["enabled"])
    seen, token = [], ""
    while True:
        page = api.trunks.ListTrunks(trunk_pb2.ListTrunksRequest(page_size=3, page_token=token))
        assert page.total_size == 8
        seen += [t.name for t in page.trunks]
        token = page.next_page_token
        if not token:
            break
    assert seen == [*sorted(names), "zz-peer"]
    peers = api.trunks.ListTrunks(trunk_pb2.ListTrunksRequest(type="peer"))
    assert [t.name for t in peers.trunks] == ["zz-peer"]
    disabled = api.trunks.ListTrunks(trunk_pb2.ListTrunksRequest(enabled=False))
    assert [t.name for t in disabled.trunks] == ["trunk-0"]
    with pytest.raises(grpc.RpcError) as caught:
        api.trunks.ListTrunks(trunk_pb2.ListTrunksRequest(page_token="garbage"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in violations(caught.value)


def test_update_changes_only_the_masked_fields(api: Api) -> None:
    create_trunk(api, "voco", call_limits=trunk_pb2.CallLimits(max_concurrent_calls=10))
    changes = trunk_pb2.Trunk(host="ignored.example.com",
                              call_limits=trunk_pb2.CallLimits(max_inbound_calls=4),
                              codecs=["OPUS", "PCMU"])
    updated = update_trunk(api, "voco", changes, ["call_limits.max_inbound_calls", "codecs"])
    trunk = updated.trunk
    assert trunk.host == "sip.example.com"
    assert trunk.codecs == ["OPUS", "PCMU"]
    assert (trunk.call_limits.max_concurrent_calls, trunk.call_limits.max_inbound_calls) == (
        10, 4)
    assert trunk.version == 3
    for path, message in (("colour", "unknown field 'colour'"), ("etag", "is output only"),
                          ("nat.nope", "unknown field 'nat.nope'")):
        with pytest.raises(grpc.RpcError) as caught:
            update_trunk(api, "voco", trunk_pb2.Trunk(), [path])
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in violations(caught.value)["update_mask"]


def test_stale_etag_is_aborted_and_changes_nothing(api: Api) -> None:
    etag = create_trunk(api, "voco").trunk.etag
    update_trunk(api, "voco", trunk_pb2.Trunk(host="a.example.com"), ["host"], etag=etag)
    with pytest.raises(grpc.RpcError) as caught:
        update_trunk(api, "voco", trunk_pb2.Trunk(host="b.example.com"), ["host"], etag=etag)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert api.trunks.GetTrunk(trunk_pb2.GetTrunkRequest(trunk="voco")).host == "a.example.com"


def test_bad_input_names_each_field_and_stores_nothing(api: Api) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        create_trunk(api, "", host="bad host", codecs=["G722"], nat=trunk_pb2.NatSettings(
            local_networks=["10.1.1.1/8"]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = violations(caught.value)
    assert found["trunk.name"] == "must have 1 to 64 characters (got 0)"
    assert "is not a valid domain name" in found["trunk.host"]
    assert found["trunk.codecs"] == "[0] 'G722' is not one of PCMU, PCMA, G729, OPUS"
    assert "did you mean 10.0.0.0/8?" in found["trunk.nat.local_networks"]
    assert api.trunks.ListTrunks(trunk_pb2.ListTrunksRequest()).total_size == 0
    create_trunk(api, "voco")
    with pytest.raises(grpc.RpcError) as duplicate:
        create_trunk(api, "VOCO")
    assert duplicate.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as tenant:
        api.trunks.GetTrunk(trunk_pb2.GetTrunkRequest(tenant="Bad Tenant!", trunk="voco"))
    assert "tenant" in violations(tenant.value)


def test_delete_is_blocked_while_a_route_uses_the_trunk(api: Api) -> None:
    trunk = create_trunk(api, "voco").trunk
    route = create_route(api, "US", ["voco"]).route
    with pytest.raises(grpc.RpcError) as caught:
        api.trunks.DeleteTrunk(trunk_pb2.DeleteTrunkRequest(trunk="voco"))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "used by routes: US" in (caught.value.details() or "")
    assert precondition_subjects(caught.value) == ["US"]
    api.routes.DeleteOutboundRoute(route_pb2.DeleteRouteRequest(route=route.id))
    deleted = api.trunks.DeleteTrunk(trunk_pb2.DeleteTrunkRequest(trunk="voco"))
    assert deleted.trunk.id == trunk.id
    with pytest.raises(grpc.RpcError) as gone:
        api.trunks.GetTrunk(trunk_pb2.GetTrunkRequest(trunk="voco"))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    history = api.trunks.GetTrunkHistory(trunk_pb2.GetTrunkHistoryRequest(trunk=trunk.id))
    assert [e.event_type for e in history.entries] == ["TrunkCreated", "TrunkDeleted"]


def test_history_records_who_what_why_and_hides_secrets(api: Api) -> None:
    create_trunk(api, "voco", reason="onboarding ACME", request_id="req-42")
    update_trunk(api, "voco", trunk_pb2.Trunk(host="sip2.example.com", transport="tls"),
                 ["host", "transport"], reason="provider moved")
    update_trunk(api, "voco", trunk_pb2.Trunk(password="Another-Long-Password-1"),
                 ["password"])
    history = api.trunks.GetTrunkHistory(trunk_pb2.GetTrunkHistoryRequest(trunk="voco"))
    entries = history.entries
    assert [(e.version, e.event_type, e.actor) for e in entries] == [
        (1, "TrunkCreated", "alice@example.com"), (2, "ServerChanged", "alice@example.com"),
        (3, "CredentialsChanged", "alice@example.com")]
    assert (entries[0].reason, entries[0].request_id) == ("onboarding ACME", "req-42")
    assert entries[1].reason == "provider moved"
    assert [(c.field, c.old_value, c.new_value) for c in entries[1].changes] == [
        ("host", "sip.example.com", "sip2.example.com"), ("transport", "udp", "tls")]
    assert [(c.field, c.old_value, c.new_value) for c in entries[2].changes] == [
        ("password", "(set)", "(changed)")]
    assert PASSWORD not in str(history) and "Another-Long" not in str(history)
    assert entries[0].time.seconds > 0


def test_restart_loses_nothing(api: Api) -> None:
    create_trunk(api, "voco")
    update_trunk(api, "voco", trunk_pb2.Trunk(codecs=["G729"]), ["codecs"])
    create_trunk(api, "backup")
    create_route(api, "US", ["voco", "backup"])
    create_route(api, "First", ["backup"], position=1)
    before = (api.trunks.ListTrunks(trunk_pb2.ListTrunksRequest()),
              api.routes.ListOutboundRoutes(route_pb2.ListRoutesRequest()))
    api.restart()
    after = (api.trunks.ListTrunks(trunk_pb2.ListTrunksRequest()),
             api.routes.ListOutboundRoutes(route_pb2.ListRoutesRequest()))
    assert after == before
    assert [r.name for r in after[1].routes] == ["First", "US"]
    assert api.trunks.GetTrunk(trunk_pb2.GetTrunkRequest(trunk="voco")).version == 2


def test_retry_with_the_same_request_id_changes_nothing(api: Api) -> None:
    first = create_trunk(api, "voco", request_id="create-voco-1")
    again = create_trunk(api, "voco", request_id="create-voco-1")
    assert again.trunk.id == first.trunk.id and again.trunk.version == 1
    with pytest.raises(grpc.RpcError) as caught:
        create_trunk(api, "other", request_id="create-voco-1")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_routes_and_resolution(api: Api) -> None:
    create_trunk(api, "voco")
    create_trunk(api, "backup")
    create_route(api, "INTL", ["backup"], patterns=("011.",))
    route = route_pb2.OutboundRoute(
        name="US", dial_patterns=[route_pb2.DialPattern(match="NXXNXXXXXX", prefix="9",
                                                         prepend="1")],
        trunks=[route_pb2.RouteTrunk(trunk_id="voco"), route_pb2.RouteTrunk(trunk_id="backup")],
        allowed_extensions=["1XXX"])
    api.routes.CreateOutboundRoute(route_pb2.CreateOutboundRouteRequest(route=route))
    update_trunk(api, "backup", trunk_pb2.Trunk(enabled=False), ["enabled"])
    found = api.routes.ResolveOutbound(route_pb2.ResolveOutboundRequest(
        number="92125551234", extension="1001"))
    assert (found.route_name, found.number) == ("US", "12125551234")
    assert [c.trunk_name for c in found.candidates] == ["voco"]
    assert found.skipped == ["backup: disabled"]
    for number, extension, code in (("92125551234", "2001", grpc.StatusCode.PERMISSION_DENIED),
                                     ("555", "1001", grpc.StatusCode.NOT_FOUND),
                                     ("9abc", "1001", grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.RpcError) as caught:
            api.routes.ResolveOutbound(route_pb2.ResolveOutboundRequest(
                number=number, extension=extension))
        assert caught.value.code() == code
    move = route_pb2.UpdateOutboundRouteRequest(route="US",
                                                changes=route_pb2.OutboundRoute(position=1))
    move.update_mask.paths.append("position")
    assert api.routes.UpdateOutboundRoute(move).route.position == 1
    listed = api.routes.ListOutboundRoutes(route_pb2.ListRoutesRequest())
    assert [(r.position, r.name) for r in listed.routes] == [(1, "US"), (2, "INTL")]
    assert [t.trunk_name for t in listed.routes[0].trunks] == ["voco", "backup"]


def test_inbound_routes(api: Api) -> None:
    create_trunk(api, "voco")
    request = route_pb2.CreateInboundRouteRequest(route=route_pb2.InboundRoute(
        did_pattern="15551234567", trunk_id="voco", destination="ivr:main"))
    created = api.routes.CreateInboundRoute(request).route
    assert created.trunk_id == api.trunks.GetTrunk(trunk_pb2.GetTrunkRequest(trunk="voco")).id
    with pytest.raises(grpc.RpcError) as duplicate:
        api.routes.CreateInboundRoute(request)
    assert duplicate.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as bad:
        api.routes.CreateInboundRoute(route_pb2.CreateInboundRouteRequest(
            route=route_pb2.InboundRoute(destination="phone:1")))
    assert "is not a destination" in violations(bad.value)["route.destination"]
    change = route_pb2.UpdateInboundRouteRequest(
        route=created.id, changes=route_pb2.InboundRoute(destination="queue:support"))
    change.update_mask.paths.append("destination")
    assert api.routes.UpdateInboundRoute(change).route.destination == "queue:support"
    with pytest.raises(grpc.RpcError) as in_use:
        api.trunks.DeleteTrunk(trunk_pb2.DeleteTrunkRequest(trunk="voco"))
    assert in_use.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    history = api.routes.GetRouteHistory(route_pb2.GetRouteRequest(route=created.id))
    assert [e.event_type for e in history.entries] == ["InboundRouteCreated",
                                                       "DestinationChanged"]


def test_templates(api: Api) -> None:
    templates = api.trunks.ListProviderTemplates(trunk_pb2.ListProviderTemplatesRequest())
    assert [t.id for t in templates.templates] == ["thevoco", "twilio", "bandwidth", "generic"]
    request = trunk_pb2.CreateTrunkRequest(template="twilio", trunk=trunk_pb2.Trunk(
        name="tw", host="acme.pstn.twilio.com", transport="tls", username="u",
        password=PASSWORD))
    assert api.trunks.CreateTrunk(request).trunk.codecs == ["PCMU", "PCMA"]
    request.trunk.transport = "tcp"
    request.trunk.name = "tw2"
    with pytest.raises(grpc.RpcError) as caught:
        api.trunks.CreateTrunk(request)
    assert "takes udp or tls, not 'tcp'" in violations(caught.value)["trunk.transport"]


def test_concurrent_commands_are_all_recorded(api: Api) -> None:
    for i in range(8):
        create_trunk(api, f"t{i}")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for n in range(10):
                update_trunk(api, f"t{worker % 8}",
                             trunk_pb2.Trunk(description=f"w{worker} n{n}"), ["description"])
        except BaseException as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    versions = [api.trunks.GetTrunk(trunk_pb2.GetTrunkRequest(trunk=f"t{i}")).version
                for i in range(8)]
    assert versions == [21] * 8


def test_health_and_reflection(api: Api) -> None:
    health: Any = health_pb2_grpc.HealthStub(api.channel)
    for service in ("", "trunkplane.v1.TrunkService", "trunkplane.v1.RouteService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    stub: Any = reflection_pb2_grpc.ServerReflectionStub(api.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]))
    with pytest.raises(grpc.RpcError) as off:  # TRUNKPLANE_REFLECTION=on: test_security.py
        list(responses)
    assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_the_authenticated_principal_is_the_actor(api: Api) -> None:
    api.trunks.CreateTrunk(trunk_pb2.CreateTrunkRequest(
        trunk=trunk_pb2.Trunk(name="x", type="peer", peer_addresses=["192.0.2.1"],
                              codecs=["PCMU"]),
        options=common_pb2.CommandOptions()), metadata=(*api.as_("carol", "operator"),
                                                        ("x-actor", "someone-else")))
    history = api.trunks.GetTrunkHistory(trunk_pb2.GetTrunkHistoryRequest(trunk="x"))
    assert history.entries[0].actor == "carol"


def test_a_store_failure_is_unavailable_not_a_crash(api: Api) -> None:
    if not api.settings.database_url:
        pytest.skip("breaks the store through PostgreSQL")
    create_trunk(api, "voco")
    with psycopg.connect(api.settings.database_url, autocommit=True) as connection:
        connection.execute("ALTER TABLE trunkplane_events RENAME TO broken")
    try:
        with pytest.raises(grpc.RpcError) as caught:
            update_trunk(api, "voco", trunk_pb2.Trunk(host="a.example.com"), ["host"])
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "nothing was recorded" in (caught.value.details() or "")
    finally:
        with psycopg.connect(api.settings.database_url, autocommit=True) as connection:
            connection.execute("ALTER TABLE broken RENAME TO trunkplane_events")
    assert update_trunk(api, "voco", trunk_pb2.Trunk(host="a.example.com"),
                        ["host"]).trunk.version == 2


def test_reads_reflect_the_writes_before_them(api: Api) -> None:
    written = create_trunk(api, "voco")
    trunk, call = api.trunks.GetTrunk.with_call(trunk_pb2.GetTrunkRequest(
        trunk="voco", min_position=written.position))
    assert trunk.id == written.trunk.id
    reflected = dict(call.trailing_metadata())["x-view-position"]
    assert int(reflected) >= written.position
    listed = api.trunks.ListTrunks(trunk_pb2.ListTrunksRequest())
    assert listed.view_position >= written.position and listed.total_size == 1
    api.plane.runner.stop()  # the views stop following the log
    moved = update_trunk(api, "voco", trunk_pb2.Trunk(host="moved.example.com"), ["host"])
    with pytest.raises(grpc.RpcError) as caught:
        api.trunks.GetTrunk(trunk_pb2.GetTrunkRequest(trunk="voco"), timeout=1.5)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"have not reached log position {moved.position}" in (caught.value.details() or "")
    stale_ok = api.trunks.GetTrunk(trunk_pb2.GetTrunkRequest(trunk="voco", min_position=-1))
    assert stale_ok.host == "sip.example.com"
