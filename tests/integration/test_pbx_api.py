"""A tenant's PBX access and its call records through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import generate_latest

from domain.calls import CallAttempt, CallRecord
from infra.app.control import CallRetention
from infra.config.settings import Settings
from tests.conftest import Api
from tests.integration.helpers import ALICE, create_trunk, violations
from trunkplane.v1 import audit_pb2, audit_pb2_grpc, common_pb2, route_pb2, trunk_pb2

SECRET = "pbx-digest-secret-0451"
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def pbx(**fields: object) -> route_pb2.PbxAccess:
    values: dict[str, object] = {
        "source_cidrs": ["192.0.2.10", "198.51.100.0/24"],
        "targets": [route_pb2.PbxTarget(uri="sip:pbx.example.com;transport=tcp", priority=20),
                    route_pb2.PbxTarget(uri="sip:192.0.2.10:5060", weight=5)],
        "username": "pbx-1", "password": SECRET}
    return route_pb2.PbxAccess(**{**values, **fields})  # type: ignore[arg-type]


def update(api: Api, changes: route_pb2.PbxAccess, paths: tuple[str, ...] = (),
           etag: str = "", request_id: str = "", tenant: str = "") -> route_pb2.PbxAccessResponse:
    request = route_pb2.UpdatePbxAccessRequest(
        tenant=tenant, pbx=changes, etag=etag,
        options=common_pb2.CommandOptions(reason="OPS-12", request_id=request_id))
    request.update_mask.paths.extend(paths)
    answer: route_pb2.PbxAccessResponse = api.routes.UpdatePbxAccess(
        request, metadata=api.as_(ALICE))
    return answer


def get(api: Api, tenant: str = "") -> route_pb2.PbxAccess:
    answer: route_pb2.PbxAccess = api.routes.GetPbxAccess(
        route_pb2.GetPbxAccessRequest(tenant=tenant))
    return answer


def test_unset_set_read_back_without_the_password(api: Api) -> None:
    empty = get(api)
    assert (empty.tenant, empty.version, empty.etag, empty.enabled) == (
        "default", 0, 'W/"0"', True)
    assert list(empty.source_cidrs) == [] and not empty.password_set
    written = update(api, pbx(), etag=empty.etag)
    read = get(api)
    assert read == written.pbx
    assert list(read.source_cidrs) == ["192.0.2.10/32", "198.51.100.0/24"]
    assert [(t.uri, t.priority, t.weight) for t in read.targets] == [
        ("sip:192.0.2.10:5060", 10, 5), ("sip:pbx.example.com;transport=tcp", 20, 1)]
    assert (read.username, read.password, read.password_set) == ("pbx-1", "", True)
    assert SECRET not in str(read) and read.version == 1 and read.etag == 'W/"1"'


def test_the_mask_changes_only_what_it_names_and_etags_guard_updates(api: Api) -> None:
    first = update(api, pbx()).pbx
    changed = update(api, route_pb2.PbxAccess(source_cidrs=["203.0.113.0/24"], username="x"),
                     ("source_cidrs",), etag=first.etag).pbx
    assert list(changed.source_cidrs) == ["203.0.113.0/24"] and changed.username == "pbx-1"
    assert len(changed.targets) == 2 and changed.password_set
    with pytest.raises(grpc.RpcError) as stale:
        update(api, route_pb2.PbxAccess(enabled=False), ("enabled",), etag=first.etag)
    assert stale.value.code() == grpc.StatusCode.ABORTED
    off = update(api, route_pb2.PbxAccess(enabled=False), ("enabled",), etag=changed.etag)
    assert off.pbx.enabled is False and off.pbx.version == 3
    cleared = update(api, route_pb2.PbxAccess(), ("username", "password", "targets")).pbx
    assert (cleared.username, cleared.password_set, list(cleared.targets)) == ("", False, [])


def test_bad_input_names_each_field_and_changes_nothing(api: Api) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        update(api, pbx(source_cidrs=["0.0.0.0/0"], password="",
                        targets=[route_pb2.PbxTarget(uri="tel:+15551234567")]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = violations(caught.value)
    assert "any address" in found["pbx.source_cidrs"]
    assert "go together" in found["pbx.password"]
    assert "is not a SIP URI" in found["pbx.targets"]
    with pytest.raises(grpc.RpcError) as mask:
        update(api, pbx(), ("password_set",))
    assert "output only" in violations(mask.value)["update_mask"]
    assert get(api).version == 0


def test_a_retry_with_the_same_request_id_changes_nothing(api: Api) -> None:
    first = update(api, pbx(), request_id="pbx-1")
    again = update(api, pbx(), request_id="pbx-1")
    assert again.pbx.version == first.pbx.version == 1
    with pytest.raises(grpc.RpcError) as caught:
        update(api, pbx(username="other"), request_id="pbx-1")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_the_history_shows_who_changed_what_and_the_password_as_changed(api: Api) -> None:
    update(api, pbx())
    update(api, route_pb2.PbxAccess(password="another-digest-secret"), ("password",))
    audit = audit_pb2_grpc.AuditServiceStub(api.channel)
    changes = audit.ListChanges(audit_pb2.ListChangesRequest(
        filter=audit_pb2.ChangeFilter(tenant="default"))).changes
    assert [(c.subject_kind, c.entry.event_type, c.entry.actor, c.entry.reason)
            for c in changes] == [
        ("pbx", "PbxCreated", ALICE, "OPS-12"), ("pbx", "PbxCredentialsChanged", ALICE, "OPS-12")]
    assert [(f.field, f.old_value, f.new_value) for f in changes[1].entry.changes] == [
        ("password", "(set)", "(changed)")]
    assert SECRET not in str(changes) and "another-digest" not in str(changes)


def test_readers_may_look_and_only_writers_may_change(api: Api) -> None:
    update(api, pbx())
    assert api.routes.GetPbxAccess(route_pb2.GetPbxAccessRequest(),
                                   metadata=api.as_("ann", "auditor")).version == 1
    for role in ("auditor", "sre", "pbx", "agent"):
        with pytest.raises(grpc.RpcError) as caught:
            api.routes.UpdatePbxAccess(route_pb2.UpdatePbxAccessRequest(pbx=pbx()),
                                       metadata=api.as_(f"someone-{role}", role))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_backup_and_restore_carry_the_pbx_with_its_password_sealed(api: Api) -> None:
    update(api, pbx())
    sealed = api.trunks.ExportConfiguration(trunk_pb2.ExportConfigurationRequest(
        with_secrets=True, passphrase="correct horse battery")).json
    plain = api.trunks.ExportConfiguration(trunk_pb2.ExportConfigurationRequest()).json
    section = json.loads(sealed)["tenants"]["default"]["pbx"]
    assert SECRET not in sealed and SECRET not in plain and "password_sealed" in section
    assert "password" not in json.loads(plain)["tenants"]["default"]["pbx"]
    update(api, route_pb2.PbxAccess(source_cidrs=["203.0.113.0/24"], password="changed-secret"),
           ("source_cidrs", "password"))
    restored = api.trunks.ImportConfiguration(trunk_pb2.ImportConfigurationRequest(
        json=sealed, passphrase="correct horse battery"))
    assert list(restored.changes) == ["default: update pbx: password, source_cidrs"]
    again = api.trunks.ImportConfiguration(trunk_pb2.ImportConfigurationRequest(json=plain))
    assert list(again.changes) == []  # no password in the document: the current one stays
    assert list(get(api).source_cidrs) == ["192.0.2.10/32", "198.51.100.0/24"]


def record(n: int, trunk_id: str, *, code: int = 200, direction: str = "outbound",
           tenant: str = "default") -> CallRecord:
    started = T0 + timedelta(minutes=n)
    return CallRecord(
        call_id=f"c{n}", tenant=tenant, direction=direction,  # type: ignore[arg-type]
        agent_id="agent-1", attempts=(CallAttempt(trunk_id, "voco", code, "x"),),
        number_received=f"9212555{n:04d}", number_sent=f"1212555{n:04d}",
        caller_received="1001", caller_sent="15550001001", trunk_id=trunk_id,
        started_at=started, answered_at=started + timedelta(seconds=2) if code == 200 else None,
        ended_at=started + timedelta(seconds=30), final_code=code, final_reason="x",
        hangup_by="pbx")


def stamp(moment: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


def test_list_calls_filters_and_pages(api: Api) -> None:
    trunk = create_trunk(api, "voco").trunk
    api.plane.calls.record([record(n, trunk.id, code=200 if n % 2 else 486)
                            for n in range(1, 8)] + [record(9, trunk.id, tenant="other")])

    def calls(**filters: object) -> list[str]:
        answer = api.trunks.ListCalls(trunk_pb2.ListCallsRequest(**filters))  # type: ignore[arg-type]
        return [c.call_id for c in answer.calls]

    assert calls() == ["c7", "c6", "c5", "c4", "c3", "c2", "c1"]
    assert calls(final_code=486) == ["c6", "c4", "c2"]
    assert calls(trunk="voco", number="12125550003") == ["c3"]
    assert calls(start_time=stamp(T0 + timedelta(minutes=2)),
                 end_time=stamp(T0 + timedelta(minutes=4))) == ["c3", "c2"]
    assert calls(tenant="other") == ["c9"]
    first = api.trunks.ListCalls(trunk_pb2.ListCallsRequest(page_size=4))
    rest = api.trunks.ListCalls(trunk_pb2.ListCallsRequest(page_size=4,
                                                           page_token=first.next_page_token))
    assert [c.call_id for c in [*first.calls, *rest.calls]] == calls()
    assert rest.next_page_token == ""
    one = first.calls[0]
    assert (one.direction, one.trunk_id, one.final_code, one.hangup_by) == (
        "outbound", trunk.id, 200, "pbx")
    assert [(a.trunk_name, a.code) for a in one.attempts] == [("voco", 200)]
    assert one.answered_at.ToDatetime(UTC) == T0 + timedelta(minutes=7, seconds=2)
    assert not first.calls[1].HasField("answered_at")


def test_list_calls_refuses_bad_filters_naming_them(api: Api) -> None:
    for request, field in ((trunk_pb2.ListCallsRequest(direction="sideways"), "direction"),
                           (trunk_pb2.ListCallsRequest(page_size=5000), "page_size"),
                           (trunk_pb2.ListCallsRequest(page_token="nope"), "page_token")):
        with pytest.raises(grpc.RpcError) as caught:
            api.trunks.ListCalls(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in violations(caught.value)
    with pytest.raises(grpc.RpcError) as unknown:
        api.trunks.ListCalls(trunk_pb2.ListCallsRequest(trunk="nope"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_embedded_agents_records_reach_list_calls(api: Api) -> None:
    assert api.plane.agent is not None
    api.plane.agent.calls.record(record(1, "no-such-trunk", code=503))
    deadline = time.monotonic() + 10
    while not (found := api.trunks.ListCalls(trunk_pb2.ListCallsRequest()).calls):
        assert time.monotonic() < deadline, "the agent's sink wrote nothing"
        time.sleep(0.05)
    assert [(c.call_id, c.final_code) for c in found] == [("c1", 503)]
    exposed = generate_latest(api.plane.metrics.registry).decode()
    assert "trunkplane_call_records_written_total 1.0" in exposed
    assert "trunkplane_call_records_pending 0.0" in exposed
    assert "trunkplane_call_records_dropped_total 0.0" in exposed


def test_the_embedded_agent_learns_the_pbx_from_the_store(api: Api) -> None:
    assert api.plane.agent is not None
    state = api.plane.agent.runner.state
    update(api, pbx())
    deadline = time.monotonic() + 10
    while (found := state.pbx_for_source("198.51.100.7")) is None:
        assert time.monotonic() < deadline, "the agent never saw the PBX"
        time.sleep(0.05)
    assert (found.tenant, found.username, found.password) == ("default", "pbx-1", SECRET)
    update(api, route_pb2.PbxAccess(enabled=False), ("enabled",))
    while state.pbx("default") is not None:
        assert time.monotonic() < deadline, "the agent kept a disabled PBX"
        time.sleep(0.05)


def test_call_records_are_kept_for_the_configured_days(api: Api) -> None:
    assert Settings.from_env({"TRUNKPLANE_CALL_RECORDS_DAYS": "30"}).call_records_days == 30
    assert api.plane.process.settings.call_records_days == 90  # the default
    now = datetime.now(UTC)
    old = replace(record(1, "t"), started_at=now - timedelta(days=2),
                  answered_at=None, ended_at=now - timedelta(days=2))
    new = replace(record(2, "t"), started_at=now - timedelta(hours=1), answered_at=None,
                  ended_at=now - timedelta(hours=1))
    api.plane.calls.record([old, new])
    assert CallRetention(api.plane.calls, 1).prune() == 1
    listed = api.trunks.ListCalls(trunk_pb2.ListCallsRequest()).calls
    assert [c.call_id for c in listed] == ["c2"]
